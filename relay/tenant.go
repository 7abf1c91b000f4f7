package relay

import "context"

// SessionTenant returns the tenant of session id: the live session's, or
// the one its log recorded on this relay ("session/<id>" metadata, written
// with its first commit). ok is false for a session this relay has
// neither live nor on record (relayd's TURN usage accounting asks, so
// its outbox events carry a tenant).
func (s *Server) SessionTenant(ctx context.Context, id string) (tenant string, ok bool, err error) {
	s.mu.Lock()
	if sess := s.sessions[id]; sess != nil && sess.tenant != "" {
		tenant = sess.tenant
	}
	s.mu.Unlock()
	if tenant != "" {
		return tenant, true, nil
	}
	blob, ok, err := s.cfg.Store.Meta(ctx, "session/"+id)
	if err != nil || !ok {
		return "", false, err
	}
	return string(blob), true, nil
}
