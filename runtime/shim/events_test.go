package shim

import "testing"

func TestTransitions(t *testing.T) {
	created := Record{ID: "c", State: StateCreated, CreatedAt: 10}
	running := created
	running.State, running.StartedAt, running.Pid = StateRunning, 20, 7
	exited := running
	exited.State, exited.FinishedAt, exited.ExitCode, exited.Reason = StateExited, 30, 88, ReasonError
	// Run 1 after an in-place restart of the exited run 0.
	again := running
	again.RestartCount, again.StartedAt = 1, 40
	again.LastTermination = &Termination{ExitCode: 88, StartedAt: 20, FinishedAt: 30, Reason: ReasonError}
	// Run 1 after an in-place restart that killed the running run 0.
	killed := again
	killed.LastTermination = &Termination{ExitCode: 137, StartedAt: 20, FinishedAt: 35, Reason: ReasonError}
	// An init container's run 1, completed.
	completed := again
	completed.State, completed.FinishedAt, completed.ExitCode, completed.Reason = StateExited, 50, 0, ReasonCompleted
	oom := exited
	oom.Reason = ReasonOOMKilled

	type ev struct {
		t     EventType
		at    int64
		run   uint32
		state State
	}
	for _, tc := range []struct {
		name     string
		from     *Record
		to       Record
		want     []ev
		exitCode int32
	}{
		{"nothing new", &running, running, nil, 0},
		{"never told", nil, running, []ev{{EventCreated, 10, 0, StateCreated}, {EventStarted, 20, 0, StateRunning}}, 0},
		{"started and exited at once", &created, exited, []ev{{EventStarted, 20, 0, StateRunning}, {EventStopped, 30, 0, StateExited}}, 0},
		{"exited", &running, exited, []ev{{EventStopped, 30, 0, StateExited}}, 0},
		{"the exit refined", &exited, oom, []ev{{EventStopped, 30, 0, StateExited}}, 0},
		{"restarted after a told exit", &exited, again, []ev{{EventStarted, 40, 1, StateRunning}}, 0},
		{"restarted after an untold exit", &running, again, []ev{{EventStopped, 30, 0, StateExited}, {EventStarted, 40, 1, StateRunning}}, 88},
		{"killed and restarted", &running, killed, []ev{{EventStopped, 35, 0, StateExited}, {EventStarted, 40, 1, StateRunning}}, 137},
		{"init ran again", &exited, completed, []ev{{EventStarted, 40, 1, StateRunning}, {EventStopped, 50, 1, StateExited}}, 0},
		{"unknown", &running, Record{ID: "c"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Transitions(tc.from, tc.to)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tc.want))
			}
			for i, e := range got {
				w := tc.want[i]
				if e.Type != w.t || e.Timestamp != w.at || e.Container.RestartCount != w.run || e.Container.State != w.state {
					t.Errorf("event %d = %s at %d of run %d (%s), want %s at %d of run %d (%s)", i,
						e.Type, e.Timestamp, e.Container.RestartCount, e.Container.State, w.t, w.at, w.run, w.state)
				}
				if e.Container.Time(e.Type) != e.Timestamp {
					t.Errorf("event %d at %d, its record says %d", i, e.Timestamp, e.Container.Time(e.Type))
				}
				if e.Type == EventStarted && (e.Container.FinishedAt != 0 || e.Container.ExitCode != 0) {
					t.Errorf("started event carries an exit: %+v", e.Container)
				}
			}
			if tc.exitCode != 0 && got[0].Container.ExitCode != tc.exitCode {
				t.Errorf("the earlier run's exit code = %d, want %d", got[0].Container.ExitCode, tc.exitCode)
			}
		})
	}
}
