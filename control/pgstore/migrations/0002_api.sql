-- 0002_api: indexes for the session-end, push and job APIs.
--
-- A shared relay's heartbeat asks which of its sessions ended without
-- naming their tenants (session ids are controld's random ids), so
-- fitting_sessions is also looked up by session_id alone.
CREATE INDEX fitting_sessions_session ON fitting_sessions (session_id);

-- The job runner reclaims jobs whose claim lapsed (a controld died while
-- running them).
CREATE INDEX scheduled_jobs_lapsed ON scheduled_jobs (locked_until) WHERE state = 'running';

-- A tenant's job list, newest first.
CREATE INDEX scheduled_jobs_tenant ON scheduled_jobs (tenant_id, created_at);

COMMENT ON COLUMN scheduled_jobs.locked_by IS 'The controld instance running the job; its finish is fenced on it.';
COMMENT ON COLUMN scheduled_jobs.last_error IS 'Why the last attempt failed: ids and reasons only, never PHI or secrets.';
