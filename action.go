package nii

import "fmt"

// Action is what a requester asks to do with a dataset's content, and what
// a grant allows. It travels in grants (JWT "actions"), in content requests
// on the wire and in audit records, always as its string.
type Action string

// The actions.
const (
	ActionRead Action = "read" // pull a version
	ActionSync Action = "sync" // follow a dataset: pull each new version
)

// ParseAction returns the action s names; "" means ActionRead.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case "":
		return ActionRead, nil
	case ActionRead, ActionSync:
		return a, nil
	}
	return "", fmt.Errorf("%w action %q: want %q or %q", ErrInvalid, s, ActionRead, ActionSync)
}

// Valid reports whether a is one of the actions.
func (a Action) Valid() bool { return a == ActionRead || a == ActionSync }
