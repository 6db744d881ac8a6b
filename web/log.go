package web

import "log/slog"

// levelFor logs server errors at error level, client errors at info, the
// rest at debug, so a healthy server's log stays quiet at LOG_LEVEL=info.
func levelFor(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case status >= 400:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
