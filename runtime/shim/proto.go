package shim

import shimv1 "github.com/warmpod/warmpod/api/shim/v1"

// ToProto converts a record to its wire form.
func ToProto(r Record) *shimv1.ContainerState {
	s := &shimv1.ContainerState{
		Id:           r.ID,
		Name:         r.Name,
		Status:       shimv1.Status(r.State),
		Pid:          int32(r.Pid),
		CreatedAt:    r.CreatedAt,
		StartedAt:    r.StartedAt,
		FinishedAt:   r.FinishedAt,
		ExitCode:     r.ExitCode,
		Reason:       r.Reason,
		Message:      r.Message,
		LogPath:      r.LogPath,
		CgroupPath:   r.CgroupPath,
		UpperDir:     r.UpperDir,
		RestartCount: r.RestartCount,
		Warm:         r.Warm,
		FromWarm:     r.FromWarm,

		ReadyGenerations: r.ReadyGenerations,
		Precreating:      r.Precreating,
	}
	if t := r.LastTermination; t != nil {
		s.LastTermination = &shimv1.Termination{
			ExitCode: t.ExitCode, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, Reason: t.Reason, Message: t.Message,
		}
	}
	return s
}

// FromProto converts a wire record back.
func FromProto(s *shimv1.ContainerState) Record {
	r := Record{
		ID:           s.Id,
		Name:         s.Name,
		State:        State(s.Status),
		Pid:          int(s.Pid),
		CreatedAt:    s.CreatedAt,
		StartedAt:    s.StartedAt,
		FinishedAt:   s.FinishedAt,
		ExitCode:     s.ExitCode,
		Reason:       s.Reason,
		Message:      s.Message,
		LogPath:      s.LogPath,
		CgroupPath:   s.CgroupPath,
		UpperDir:     s.UpperDir,
		RestartCount: s.RestartCount,
		Warm:         s.Warm,
		FromWarm:     s.FromWarm,

		ReadyGenerations: s.ReadyGenerations,
		Precreating:      s.Precreating,
	}
	if t := s.LastTermination; t != nil {
		r.LastTermination = &Termination{
			ExitCode: t.ExitCode, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, Reason: t.Reason, Message: t.Message,
		}
	}
	return r
}
