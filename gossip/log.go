package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newStdLogger adapts slog for memberlist, which writes lines such as
// "[WARN] memberlist: ...": the bracketed level picks the slog level.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(levelWriter{l}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

var levels = []struct {
	tag   []byte
	level slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[ERR] "), slog.LevelError},
	{[]byte("[ERROR] "), slog.LevelError},
}

func (w levelWriter) Write(p []byte) (int, error) {
	msg, level := bytes.TrimSpace(p), slog.LevelInfo
	for _, lv := range levels {
		if rest, ok := bytes.CutPrefix(msg, lv.tag); ok {
			msg, level = rest, lv.level
			break
		}
	}
	w.l.Log(context.Background(), level, string(msg))
	return len(p), nil
}
