package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/stapes-relay/stapes/relay/wire"
)

// device is the config state of one hearing aid, shared by every session
// on this relay that names it. Applied is what the hearing aid confirmed;
// head is applied plus every accepted command not yet applied or rejected.
type device struct {
	key string // metadata name: "device/<tenant>/<serial>"

	mu            sync.Mutex // guards the fields below
	loaded        bool
	applied       uint64
	appliedParams map[string]int64
	head          uint64
	headParams    map[string]int64
}

func deviceKey(tenant, serial string) string { return "device/" + tenant + "/" + serial }

// accept checks a config command against the head (compare-and-set) and
// the model limits. On success it advances the head and returns the state
// blob to commit with the command. Caller holds d.mu.
func (d *device) accept(cmd *wire.Config, lim *ModelLimits, ref string) ([]byte, *protoError) {
	if cmd.BaseVersion != d.head {
		e := rejectf(wire.CodeConflict, ref, "stale base version %d, device head is %d", cmd.BaseVersion, d.head)
		e.cfgV = d.head
		return nil, e
	}
	if len(cmd.Params) == 0 {
		return nil, rejectf(wire.CodeBadPayload, ref, "config command has no parameters")
	}
	for _, p := range cmd.Params {
		if err := lim.check(p, d.headParams); err != "" {
			return nil, &protoError{code: wire.CodeLimit, msg: err, ref: ref}
		}
	}
	added := 0
	for _, p := range cmd.Params {
		if _, ok := d.headParams[p.Name]; !ok {
			added++
		}
	}
	if len(d.headParams)+added > wire.MaxParams {
		return nil, rejectf(wire.CodeLimit, ref, "device config would exceed %d parameters", wire.MaxParams)
	}
	d.head = cmd.BaseVersion + 1
	for _, p := range cmd.Params {
		d.headParams[p.Name] = p.Value
	}
	return d.blob(), nil
}

// applied records that the hearing aid applied the command that moved the
// config from base to base+1. Caller holds d.mu.
func (d *device) onApplied(cmd *wire.Config) []byte {
	target := cmd.BaseVersion + 1
	if target > d.applied {
		d.applied = target
		for _, p := range cmd.Params {
			d.appliedParams[p.Name] = p.Value
		}
	}
	if d.head < d.applied {
		d.head = d.applied
		d.headParams = maps.Clone(d.appliedParams)
	}
	return d.blob()
}

// onRejected records that the hearing aid refused the command based on
// base: commands accepted on top of it are now stale, so the head falls back
// to what is applied. Caller holds d.mu.
func (d *device) onRejected(cmd *wire.Config) []byte {
	if d.head >= cmd.BaseVersion+1 {
		d.head = d.applied
		d.headParams = maps.Clone(d.appliedParams)
	}
	return d.blob()
}

// adopt takes an authoritative applied version from the control plane
// when it is ahead of what this relay knows (the device was fitted through
// another relay meanwhile): applied and head move to it, and commands
// pending on an older head become stale. Caller holds d.mu.
func (d *device) adopt(version uint64, params map[string]int64) bool {
	if version <= d.applied {
		return false
	}
	d.applied, d.head = version, version
	d.appliedParams = maps.Clone(params)
	if d.appliedParams == nil {
		d.appliedParams = map[string]int64{}
	}
	d.headParams = maps.Clone(d.appliedParams)
	return true
}

// snapshot returns the head version and params as a Config. Caller holds d.mu.
func (d *device) snapshot() []byte {
	c := wire.Config{BaseVersion: d.head}
	for k, v := range d.headParams {
		c.Params = append(c.Params, wire.Param{Name: k, Value: v})
	}
	return wire.AppendConfig(nil, &c)
}

func paramsOf(m map[string]int64) []wire.Param {
	ps := make([]wire.Param, 0, len(m))
	for k, v := range m {
		ps = append(ps, wire.Param{Name: k, Value: v})
	}
	return ps
}

// blob encodes the state: uvarint(len(applied)) applied head, each a
// wire.Config encoding.
func (d *device) blob() []byte {
	a := wire.AppendConfig(nil, &wire.Config{BaseVersion: d.applied, Params: paramsOf(d.appliedParams)})
	b := binary.AppendUvarint(nil, uint64(len(a)))
	b = append(b, a...)
	return wire.AppendConfig(b, &wire.Config{BaseVersion: d.head, Params: paramsOf(d.headParams)})
}

var errDeviceBlob = errors.New("relay: corrupt device state")

// load decodes a state blob. Caller holds d.mu.
func (d *device) load(b []byte) error {
	d.loaded = true
	d.appliedParams = map[string]int64{}
	d.headParams = map[string]int64{}
	if b == nil {
		return nil
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return errDeviceBlob
	}
	a, err := wire.DecodeConfig(b[k : k+int(n)])
	if err != nil {
		return fmt.Errorf("%w: %w", errDeviceBlob, err)
	}
	h, err := wire.DecodeConfig(b[k+int(n):])
	if err != nil {
		return fmt.Errorf("%w: %w", errDeviceBlob, err)
	}
	d.applied, d.head = a.BaseVersion, h.BaseVersion
	for _, p := range a.Params {
		d.appliedParams[p.Name] = p.Value
	}
	for _, p := range h.Params {
		d.headParams[p.Name] = p.Value
	}
	return nil
}

// check returns "" when p is within limits, else a reason naming the
// parameter (parameter names are not patient data).
func (l *ModelLimits) check(p wire.Param, head map[string]int64) string {
	pl, ok := l.Params[p.Name]
	if !ok {
		pl, ok = l.Params["*"]
	}
	if !ok {
		if l.Open {
			return ""
		}
		return fmt.Sprintf("parameter %q is not allowed for this model", p.Name)
	}
	// Reasons name the parameter and the limit, never the requested value.
	if p.Value < pl.Min || p.Value > pl.Max {
		return fmt.Sprintf("parameter %q outside the model's range [%d, %d]", p.Name, pl.Min, pl.Max)
	}
	if cur, known := head[p.Name]; known && pl.MaxStep > 0 {
		step := p.Value - cur
		if step < 0 {
			step = -step
		}
		if step > pl.MaxStep {
			return fmt.Sprintf("parameter %q changes by more than the model's largest step %d", p.Name, pl.MaxStep)
		}
	}
	return ""
}
