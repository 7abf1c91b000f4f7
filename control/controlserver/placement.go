package controlserver

import (
	"context"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// Placement: a fitting session goes to the relay that minimises the
// clinician↔patient path, estimated from round-trip times both sides
// measured to the relays (client.Probe: PINGs before HELLO). The
// clinician sends its RTTs with POST /v1/sessions ("rtts": {"relay-id":
// ms}); the patient's app reports its own beforehand with PUT
// /v1/placement/rtts, authenticated by a patient session token like the
// push registrations. Both are stored (relay_rtts), a report replacing
// the subject's last one; reports older than PlacementMaxAge are ignored.
//
// Among the live relays (heartbeat within RelayLiveness, not draining,
// below capacity, with a WebSocket address; only the asked region's if
// the request names one that has any): the relay with the smallest
// clinician RTT + patient RTT decides the region ("path"); where no relay
// has both, one side's RTT decides ("clinician", then "patient"); with no
// RTTs at all, load decides ("load"). Within the region the least-loaded
// relay (load/capacity) takes the session. RTTs hint at where a patient
// is: they are stored, never logged; the answer reports the path only.

// placementView says how a session's relay was chosen.
type placementView struct {
	By     string   `json:"by"`                // path, clinician, patient or load
	Region string   `json:"region"`            // the chosen region
	PathMS *float64 `json:"path_ms,omitempty"` // the estimate that chose the region (not with load)
}

// Ways a relay is chosen.
const (
	placedByPath      = "path"
	placedByClinician = "clinician"
	placedByPatient   = "patient"
	placedByLoad      = "load"
)

// checkRTTs refuses (400) an RTT report that is not relay ids → 0..60000 ms.
func checkRTTs(rtts map[string]float64) error {
	if len(rtts) > pgstore.MaxRTTs {
		return badRequest("rtts names %d relays, at most %d", len(rtts), pgstore.MaxRTTs)
	}
	for id, v := range rtts {
		if err := checkID("rtts relay id", id); err != nil {
			return err
		}
		if math.IsNaN(v) || v < 0 || v > 60000 {
			return badRequest("rtts values are round-trip times in milliseconds, 0 to 60000")
		}
	}
	return nil
}

// putPatientRTTs stores the RTTs the patient's app measured, replacing
// its last report.
func (s *Server) putPatientRTTs(w http.ResponseWriter, r *http.Request, a *patientAuth) error {
	var req struct {
		RTTs map[string]float64 `json:"rtts"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if req.RTTs == nil {
		return badRequest(`rtts is required: {"rtts": {"relay-id": milliseconds, ...}}`)
	}
	if err := checkRTTs(req.RTTs); err != nil {
		return err
	}
	now := s.cfg.Now()
	err := s.st.PutRTTs(r.Context(), pgstore.RTTReport{TenantID: a.claims.Tenant, Role: pgstore.RTTPatient,
		SubjectID: a.claims.Subject, RTTs: req.RTTs, MeasuredAt: now})
	if err != nil {
		return s.storeError(r, "RTT report", err)
	}
	s.log.InfoContext(r.Context(), "patient RTTs stored", "tenant", a.claims.Tenant, "patient", a.claims.Subject,
		"relays", len(req.RTTs), "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusOK, map[string]any{"relays": len(req.RTTs), "measured_at": now.UTC(),
		"expires_at": now.Add(s.cfg.PlacementMaxAge).UTC()})
	return nil
}

// placeSession stores the clinician's RTTs (when sent) and chooses the
// relay of a new session of patient.
func (s *Server) placeSession(ctx context.Context, tenant, clinician, patient, region string, rtts map[string]float64) (pgstore.Node, placementView, error) {
	now := s.cfg.Now()
	since := now.Add(-s.cfg.PlacementMaxAge)
	if rtts != nil {
		err := s.st.PutRTTs(ctx, pgstore.RTTReport{TenantID: tenant, Role: pgstore.RTTClinician, SubjectID: clinician, RTTs: rtts, MeasuredAt: now})
		if err != nil {
			return pgstore.Node{}, placementView{}, err
		}
	} else {
		rep, err := s.st.RTTs(ctx, tenant, pgstore.RTTClinician, clinician, since)
		if err != nil {
			return pgstore.Node{}, placementView{}, err
		}
		rtts = rep.RTTs
	}
	prep, err := s.st.RTTs(ctx, tenant, pgstore.RTTPatient, patient, since)
	if err != nil {
		return pgstore.Node{}, placementView{}, err
	}
	nodes, err := s.st.Nodes(ctx, tenant)
	if err != nil {
		return pgstore.Node{}, placementView{}, err
	}
	return place(s.eligible(nodes, region, now), rtts, prep.RTTs)
}

// eligible returns the relays that can take a session now: live, not
// draining, below capacity, with a WebSocket address; only those of
// region when it names one that has any.
func (s *Server) eligible(nodes []pgstore.Node, region string, now time.Time) []pgstore.Node {
	var all, in []pgstore.Node
	for i := range nodes {
		n := &nodes[i]
		if !s.live(n, now) || n.Addresses["ws"] == "" || (n.Capacity > 0 && n.Load >= n.Capacity) {
			continue
		}
		all = append(all, *n)
		if region != "" && n.Region == region {
			in = append(in, *n)
		}
	}
	if len(in) > 0 {
		return in
	}
	return all
}

// place chooses among eligible relays by the clinician's and the
// patient's RTTs (relay id → ms), as the comment at the top describes.
func place(nodes []pgstore.Node, clin, pat map[string]float64) (pgstore.Node, placementView, error) {
	if len(nodes) == 0 {
		return pgstore.Node{}, placementView{}, ErrNoRelay
	}
	// Stable order, so equal scores break ties the same way every time.
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	by := placedByLoad
	var score func(id string) (float64, bool)
	switch {
	case anyBoth(nodes, clin, pat):
		by = placedByPath
		score = func(id string) (float64, bool) {
			c, okc := clin[id]
			p, okp := pat[id]
			return c + p, okc && okp
		}
	case anyOf(nodes, clin):
		by = placedByClinician
		score = func(id string) (float64, bool) { v, ok := clin[id]; return v, ok }
	case anyOf(nodes, pat):
		by = placedByPatient
		score = func(id string) (float64, bool) { v, ok := pat[id]; return v, ok }
	}
	view := placementView{By: by}
	region, all := "", true
	if score != nil {
		best := math.Inf(1)
		for _, n := range nodes {
			if v, ok := score(n.ID); ok && v < best {
				best, region = v, n.Region
			}
		}
		view.PathMS = &best
		all = false
	}
	var pick *pgstore.Node
	var pickLoad float64
	for i := range nodes {
		n := &nodes[i]
		if !all && n.Region != region {
			continue
		}
		if l := loadOf(n); pick == nil || l < pickLoad {
			pick, pickLoad = n, l
		}
	}
	view.Region = pick.Region
	return *pick, view, nil
}

func anyBoth(nodes []pgstore.Node, a, b map[string]float64) bool {
	for _, n := range nodes {
		_, oka := a[n.ID]
		_, okb := b[n.ID]
		if oka && okb {
			return true
		}
	}
	return false
}

func anyOf(nodes []pgstore.Node, m map[string]float64) bool {
	for _, n := range nodes {
		if _, ok := m[n.ID]; ok {
			return true
		}
	}
	return false
}

// loadOf is a relay's load as a share of its capacity.
func loadOf(n *pgstore.Node) float64 {
	capacity := n.Capacity
	if capacity == 0 {
		capacity = nominalCapacity
	}
	return float64(n.Load) / float64(capacity)
}
