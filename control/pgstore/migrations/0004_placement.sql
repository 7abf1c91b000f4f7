-- 0004_placement: round-trip times clients measured to relays, for
-- placing fitting sessions on the relay with the shortest
-- clinician↔patient path.
--
-- A client probes the relays of the relay map (PING before HELLO,
-- protocol §9.4) and reports the median RTT per relay: the clinician with
-- each session request, the patient's app whenever it holds a session
-- token. A report replaces the subject's earlier one as a whole (the last
-- report is the subject's view of the network). Placement ignores rows
-- older than controld's PlacementMaxAge. relay_id names a node of the
-- nodes table (shared or the tenant's own) without a foreign key: a relay
-- that is removed simply stops matching. The RTTs hint at where a patient
-- is, so they are never logged.
CREATE TABLE relay_rtts (
    tenant_id    stapes_id   NOT NULL REFERENCES tenants,
    subject_role text        NOT NULL CHECK (subject_role IN ('clinician', 'patient')),
    subject_id   stapes_id   NOT NULL,
    relay_id     stapes_id   NOT NULL,
    rtt_ms       real        NOT NULL CHECK (rtt_ms >= 0 AND rtt_ms <= 60000),
    measured_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject_role, subject_id, relay_id)
);
COMMENT ON TABLE relay_rtts IS 'Median RTT (ms) a clinician or patient app measured to a relay; the last report of a subject replaces its earlier ones.';
