package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// Reasons a peer's gossip is rejected, as counted in
// sluice_gossip_rejected_total.
const (
	rejectKey       = "key"       // no installed key decrypts it (wrong key, or none)
	rejectLabel     = "label"     // another cluster label, or none
	rejectMalformed = "malformed" // not memberlist's protocol
)

// logWriter turns memberlist's log lines ("[LEVEL] memberlist: message")
// into slog records at the matching level, and counts the lines that mean a
// peer's gossip was rejected.
type logWriter struct {
	log    *slog.Logger
	reject func(reason string)
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "] "); ok {
			switch tag {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimPrefix(msg, "memberlist: ")
		}
	}
	if strings.Contains(line, "use of closed network connection") {
		// memberlist's goroutines still sending while it shuts down.
		level = slog.LevelDebug
	}
	if reason := rejection(line); reason != "" {
		w.reject(reason)
		level = slog.LevelWarn // a stranger knocking is not our error
	}
	if w.log.Enabled(context.Background(), level) {
		w.log.Log(context.Background(), level, line, "component", "memberlist")
	}
	return len(p), nil
}

func rejection(line string) string {
	lower := strings.ToLower(line)
	switch {
	case strings.Contains(lower, "unacceptable label"), strings.Contains(lower, "label header"):
		return rejectLabel
	case strings.Contains(lower, "decrypt"), strings.Contains(lower, "encryption is configured but remote state is not encrypted"):
		return rejectKey
	case strings.Contains(lower, "not supported"), strings.Contains(lower, "failed to decode"):
		return rejectMalformed
	}
	return ""
}
