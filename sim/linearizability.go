package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
)

// registerInput and registerOutput are the operations of a single-key
// register, as porcupine sees them.
type registerInput struct {
	put   bool
	value string
}

// registerModel is a register whose initial value is "" (absent).
var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(registerInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		in := input.(registerInput)
		if in.put {
			return fmt.Sprintf("put(%q)", in.value)
		}
		return fmt.Sprintf("get() → %q", output.(string))
	},
}

// checkRegister verifies that a single key's history is linearizable. Puts
// with an unknown outcome (ret == 0) may have taken effect at any point
// after their call, or never.
func checkRegister(ops []kvOp) error {
	if len(ops) == 0 {
		return nil
	}
	hist := make([]porcupine.Operation, 0, len(ops))
	for i, op := range ops {
		ret := int64(op.ret)
		if op.ret == 0 {
			ret = math.MaxInt64
		}
		out := ""
		if !op.put {
			out = op.value
		}
		hist = append(hist, porcupine.Operation{ClientId: i, Input: registerInput{put: op.put, value: op.value},
			Call: int64(op.call), Output: out, Return: ret})
	}
	res := porcupine.CheckOperationsTimeout(registerModel, hist, 20*time.Second)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return nil // the search timed out; not a finding
	}
	return fmt.Errorf("history of %d operations is not linearizable", len(ops))
}
