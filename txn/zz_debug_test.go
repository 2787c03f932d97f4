package txn

import (
	"strings"
	"testing"
)

func TestZZDebug(t *testing.T) {
	for _, name := range []string{"TestCoordinatorFailsBeforeCommitRecord", "TestParticipantLeaderFailsWhilePrepared", "TestTwoPhaseVoteNoAbortsEveryone"} {
		_ = name
	}
	var tr strings.Builder
	traceHook = func(s string) { tr.WriteString(s) }
	t.Run("x", TestCoordinatorFailsBeforeCommitRecord)
	t.Run("y", TestParticipantLeaderFailsWhilePrepared)
	t.Run("z", TestTwoPhaseVoteNoAbortsEveryone)
	traceHook = nil
	var out []string
	for _, l := range strings.Split(tr.String(), "\n") {
		if !strings.Contains(l, "sends Query") && !strings.Contains(l, "dropped") {
			out = append(out, l)
		}
	}
	t.Log(strings.Join(out, "\n"))
}
