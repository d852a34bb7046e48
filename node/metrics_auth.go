package node

func (n *Node) accessDecisionCounts() map[[2]string]uint64 { return nil } // (result, reason) → count; replaced by the auth work
