package fakemodel

import "time"

// SetNow pins the clock behind "created" timestamps, for golden transcripts.
func (s *Server) SetNow(t time.Time) { s.now = func() time.Time { return t } }
