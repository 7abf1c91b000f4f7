-- 0001_init: the control-plane schema.
--
-- Every table carries tenant_id and leads its primary key and unique keys
-- with it, so each can be distributed by tenant_id (Citus) with its
-- foreign keys co-located. Ids are text (the stapes_id domain: 1 to 128
-- bytes, the token package's MaxIDLen): tokens carry them as strings,
-- hearing-aid serials and relay session ids are strings already.
-- Deployment-wide rows (shared relays, global feature flags and model
-- limits, signing keys) belong to the reserved tenant '_system'.
--
-- PHI: only patients.display_name (optional) and the payloads of messages
-- and audit entries. Never log them.

CREATE DOMAIN stapes_id AS text CHECK (octet_length(VALUE) BETWEEN 1 AND 128);

CREATE TABLE tenants (
    tenant_id   stapes_id   PRIMARY KEY,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
COMMENT ON TABLE tenants IS 'Clinics. ''_system'' owns deployment-wide rows.';
INSERT INTO tenants (tenant_id, name) VALUES ('_system', 'deployment-wide: shared relays, global flags and limits, signing keys');

CREATE TABLE clinicians (
    tenant_id     stapes_id   NOT NULL REFERENCES tenants,
    clinician_id  stapes_id   NOT NULL,
    email         text        NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'clinician' CHECK (role IN ('clinician', 'admin')),
    display_name  text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    PRIMARY KEY (tenant_id, clinician_id),
    UNIQUE (tenant_id, email)
);
CREATE INDEX clinicians_email ON clinicians (email);
COMMENT ON COLUMN clinicians.email IS 'Login name, lower case. Unique per tenant; login looks it up across tenants.';
COMMENT ON COLUMN clinicians.password_hash IS 'argon2id, PHC string format ($argon2id$v=19$m=…,t=…,p=…$salt$hash). Secret: never logged or returned by the API.';

CREATE TABLE patients (
    tenant_id    stapes_id   NOT NULL REFERENCES tenants,
    patient_id   stapes_id   NOT NULL,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id)
);
COMMENT ON COLUMN patients.patient_id IS 'Short opaque id (the patient app''s token subject); not derived from the name.';
COMMENT ON COLUMN patients.display_name IS 'PHI: the name the clinic shows for the patient. Optional; never logged, never sent to relays.';

CREATE TABLE devices (
    tenant_id      stapes_id   NOT NULL REFERENCES tenants,
    serial         stapes_id   NOT NULL,
    model          stapes_id   NOT NULL,
    firmware       text        NOT NULL DEFAULT '',
    patient_id     stapes_id,
    config_version bigint      NOT NULL DEFAULT 0 CHECK (config_version >= 0),
    config         jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, serial),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, patient_id)
);
CREATE INDEX devices_patient ON devices (tenant_id, patient_id);
COMMENT ON COLUMN devices.config_version IS 'Authoritative config version: advanced only by compare-and-set (UPDATE … WHERE config_version = base).';
COMMENT ON COLUMN devices.config IS 'Current parameters {name: value}: every applied version merged.';

CREATE TABLE care_relationships (
    tenant_id    stapes_id   NOT NULL,
    clinician_id stapes_id   NOT NULL,
    patient_id   stapes_id   NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, clinician_id, patient_id),
    FOREIGN KEY (tenant_id, clinician_id) REFERENCES clinicians (tenant_id, clinician_id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, patient_id)
);
CREATE INDEX care_relationships_patient ON care_relationships (tenant_id, patient_id);

CREATE TABLE model_limits (
    tenant_id stapes_id NOT NULL REFERENCES tenants,
    model     stapes_id NOT NULL,
    parameter text      NOT NULL CHECK (octet_length(parameter) BETWEEN 1 AND 64),
    min_value bigint    NOT NULL,
    max_value bigint    NOT NULL,
    max_step  bigint    NOT NULL DEFAULT 0 CHECK (max_step >= 0),
    PRIMARY KEY (tenant_id, model, parameter),
    CHECK (min_value <= max_value)
);
COMMENT ON TABLE model_limits IS 'Per-model safety limits per parameter; ''_system'' rows apply to every tenant, a tenant''s own row for the same model and parameter replaces them. max_step 0: no step limit.';

CREATE TABLE device_configs (
    tenant_id  stapes_id   NOT NULL,
    serial     stapes_id   NOT NULL,
    version    bigint      NOT NULL CHECK (version > 0),
    params     jsonb       NOT NULL,
    session_id stapes_id,
    seq        bigint,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, serial, version),
    FOREIGN KEY (tenant_id, serial) REFERENCES devices (tenant_id, serial)
);
COMMENT ON TABLE device_configs IS 'One row per config version: the parameters that version set over the one before, and the session message that carried it.';

CREATE TABLE fitting_sessions (
    tenant_id     stapes_id   NOT NULL,
    session_id    stapes_id   NOT NULL,
    clinician_id  stapes_id   NOT NULL,
    patient_id    stapes_id   NOT NULL,
    device_serial stapes_id,
    relay_node_id stapes_id,
    mode          text        NOT NULL DEFAULT 'advanced' CHECK (mode IN ('advanced', 'standard')),
    state         text        NOT NULL DEFAULT 'created' CHECK (state IN ('created', 'active', 'ended', 'expired')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, clinician_id) REFERENCES clinicians (tenant_id, clinician_id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, patient_id),
    FOREIGN KEY (tenant_id, device_serial) REFERENCES devices (tenant_id, serial)
);
CREATE INDEX fitting_sessions_patient ON fitting_sessions (tenant_id, patient_id, created_at);
CREATE INDEX fitting_sessions_clinician ON fitting_sessions (tenant_id, clinician_id, created_at);

-- Synced from relays (COPY into staging + INSERT … ON CONFLICT DO NOTHING).
-- No foreign keys: a batch must land even if its session row is late, and
-- the per-row checks would slow the sync.

CREATE TABLE messages (
    tenant_id  stapes_id   NOT NULL,
    session_id stapes_id   NOT NULL,
    seq        bigint      NOT NULL CHECK (seq > 0),
    sender     stapes_id   NOT NULL,
    kind       integer     NOT NULL CHECK (kind BETWEEN 0 AND 65535),
    client_id  text        NOT NULL DEFAULT '',
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id, seq)
);
COMMENT ON COLUMN messages.kind IS 'wire.Kind: 1 config, 2 chat, 3 telemetry, 4 signal, 5 typing, 64+ application-defined.';
COMMENT ON COLUMN messages.payload IS 'PHI possible (chat, config). Never logged.';

CREATE TABLE receipts (
    tenant_id  stapes_id   NOT NULL,
    session_id stapes_id   NOT NULL,
    seq        bigint      NOT NULL CHECK (seq > 0),
    ref_seq    bigint      NOT NULL CHECK (ref_seq > 0),
    stage      smallint    NOT NULL CHECK (stage BETWEEN 1 AND 255),
    reason     text        NOT NULL DEFAULT '',
    acker      stapes_id   NOT NULL,
    created_at timestamptz NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id, seq)
);
CREATE INDEX receipts_ref ON receipts (tenant_id, session_id, ref_seq);
COMMENT ON COLUMN receipts.seq IS 'Position of the ACK in the session log.';
COMMENT ON COLUMN receipts.stage IS 'wire.Stage: 1 received, 2 applied, 3 rejected.';

CREATE TABLE audit_log (
    tenant_id    stapes_id   NOT NULL,
    session_id   stapes_id   NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    prev_hash    bytea       NOT NULL,
    hash         bytea       NOT NULL,
    entry        bytea       NOT NULL,
    chain_broken boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id, seq)
);
CREATE INDEX audit_log_broken ON audit_log (tenant_id, session_id) WHERE chain_broken;
COMMENT ON COLUMN audit_log.chain_broken IS 'Set by the sync when the entry does not chain to its predecessor (tampering or loss): flagged, never silently stored.';
COMMENT ON COLUMN audit_log.entry IS 'PHI possible. Never logged.';

CREATE TABLE device_telemetry (
    tenant_id  stapes_id        NOT NULL,
    serial     stapes_id        NOT NULL,
    metric     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    session_id stapes_id,
    samples    integer          NOT NULL DEFAULT 1 CHECK (samples > 0),
    value_avg  double precision NOT NULL,
    value_min  double precision NOT NULL,
    value_max  double precision NOT NULL,
    PRIMARY KEY (tenant_id, serial, metric, ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE device_telemetry IS 'Telemetry rollups, one partition per month (device_telemetry_yYYYYmMM), created ahead by stapes_ensure_telemetry_partitions().';

-- stapes_ensure_telemetry_partitions creates the monthly partitions of
-- device_telemetry from the previous month to months_ahead months after
-- the current one, and returns how many it created. controld runs it
-- daily; rows outside every partition are refused.
CREATE FUNCTION stapes_ensure_telemetry_partitions(months_ahead integer DEFAULT 3)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date - interval '1 month';
    m date;
    part text;
    created integer := 0;
BEGIN
    FOR i IN 0 .. months_ahead + 1 LOOP
        m := first_month + make_interval(months => i);
        part := format('device_telemetry_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF device_telemetry FOR VALUES FROM (%L) TO (%L)',
                part, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;
SELECT stapes_ensure_telemetry_partitions(3);

CREATE TABLE nodes (
    tenant_id       stapes_id   NOT NULL DEFAULT '_system' REFERENCES tenants,
    node_id         stapes_id   NOT NULL,
    region          text        NOT NULL,
    addresses       jsonb       NOT NULL DEFAULT '{}',
    credential_hash text        NOT NULL,
    version         text        NOT NULL DEFAULT '',
    capacity        integer     NOT NULL DEFAULT 0 CHECK (capacity >= 0),
    load            integer     NOT NULL DEFAULT 0 CHECK (load >= 0),
    draining        boolean     NOT NULL DEFAULT false,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz,
    PRIMARY KEY (tenant_id, node_id)
);
COMMENT ON TABLE nodes IS 'Relays. Shared relays belong to ''_system''; a tenant may own dedicated ones.';
COMMENT ON COLUMN nodes.addresses IS 'Public addresses by transport, e.g. {"ws": "wss://…", "quic": "…:8443", "turn": "…:3478"}.';
COMMENT ON COLUMN nodes.credential_hash IS 'Hash of the node credential (the API''s choice of hash). Secret: never logged.';

CREATE TABLE signing_keys (
    tenant_id          stapes_id   NOT NULL DEFAULT '_system' REFERENCES tenants,
    kid                stapes_id   NOT NULL,
    public_key         bytea       NOT NULL CHECK (octet_length(public_key) = 32),
    private_key_sealed bytea,
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    PRIMARY KEY (tenant_id, kid)
);
COMMENT ON TABLE signing_keys IS 'Ed25519 token keys by kid; relays fetch the public keys and revocations.';
COMMENT ON COLUMN signing_keys.private_key_sealed IS 'NULL: the private key lives only in controld''s key file. Otherwise the key sealed (encrypted) by controld with a key-encryption key from its configuration; never plaintext.';

CREATE TABLE feature_flags (
    tenant_id   stapes_id   NOT NULL REFERENCES tenants,
    flag        text        NOT NULL CHECK (octet_length(flag) BETWEEN 1 AND 128),
    enabled     boolean     NOT NULL DEFAULT false,
    value       jsonb,
    description text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, flag)
);
COMMENT ON TABLE feature_flags IS 'Served with the relay map; ''_system'' flags apply to every tenant unless a tenant sets its own.';

CREATE TABLE push_registrations (
    tenant_id       stapes_id   NOT NULL,
    patient_id      stapes_id   NOT NULL,
    installation_id stapes_id   NOT NULL,
    provider        text        NOT NULL CHECK (provider IN ('webhook', 'apns', 'fcm')),
    push_token      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id, installation_id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, patient_id)
);
COMMENT ON COLUMN push_registrations.push_token IS 'Provider device token or webhook URL. Secret: never logged.';

CREATE TABLE scheduled_jobs (
    tenant_id    stapes_id   NOT NULL REFERENCES tenants,
    job_id       stapes_id   NOT NULL,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}',
    run_at       timestamptz NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    locked_by    text,
    locked_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id)
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (run_at) WHERE state = 'pending';
