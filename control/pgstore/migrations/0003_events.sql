-- 0003_events: session lifecycle and usage events synced from relays.
--
-- A relay records, besides the session log, when a session opened on it,
-- when participants joined and left, when it ended, and (issue 7) TURN
-- usage. Each event is one record of the relay's outbox: origin (relay
-- node id '/' store id) and pos name it, so a replayed batch inserts
-- nothing. No foreign keys, like the other synced tables.
CREATE TABLE session_events (
    tenant_id     stapes_id   NOT NULL,
    session_id    stapes_id   NOT NULL,
    origin        text        NOT NULL CHECK (length(origin) BETWEEN 3 AND 300),
    pos           bigint      NOT NULL CHECK (pos > 0),
    relay_node_id stapes_id   NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('opened', 'joined', 'left', 'ended', 'turn_usage')),
    at            timestamptz NOT NULL,
    data          jsonb       NOT NULL DEFAULT '{}',
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id, origin, pos)
);
CREATE INDEX session_events_at ON session_events (tenant_id, session_id, at);
COMMENT ON COLUMN session_events.data IS 'Event details from the relay: participant subject ids, roles, transports, reasons, byte counts. Short ids only, no PHI.';
