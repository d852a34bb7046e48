package web

func (h *Handler) harmonyRoutes() {}
