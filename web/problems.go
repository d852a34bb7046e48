package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// Report a problem: a form on every dataset page, public, that reaches the
// dataset's publisher (node: recorded there, relayed when this node is not
// the publisher). The form is protected from cross-site posts by a signed
// double-submit token: a random nonce and its HMAC under a key of this
// process, set in a SameSite=Strict cookie and in the form's hidden field;
// a post must carry both, equal, with a good signature, and come from this
// site. The officer reads and closes reports at /officer/problems.

// Limits of the form (the node checks the same bounds again).
const (
	reportCookie     = "nii_report"
	maxReportName    = 200
	maxReportEmail   = 254
	maxReportMessage = 8000
	// maxReportForm bounds the form's body: the fields at their limits,
	// URL-encoded (up to 3 bytes a byte), and the token.
	maxReportForm = 3*(maxReportName+maxReportEmail+maxReportMessage) + 1024
)

// reportForm is what the report form shows.
type reportForm struct {
	Action               string // where the form posts
	Dataset              string
	Publisher            string
	CSRF                 string
	Name, Email, Message string
	Err                  string
	Receipt              *api.ProblemReceipt
	MaxName, MaxEmail    int
	MaxMessage           int
}

func (h *Handler) newReportForm(d nii.DatasetID, publisher string) reportForm {
	return reportForm{Action: "/datasets/" + d.String() + "/problems", Dataset: d.String(), Publisher: publisher,
		MaxName: maxReportName, MaxEmail: maxReportEmail, MaxMessage: maxReportMessage}
}

// signReport returns nonce.signature.
func (h *Handler) signReport(nonce string) string {
	m := hmac.New(sha256.New, h.reportKey[:])
	m.Write([]byte(nonce))
	return nonce + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) validReportToken(tok string) bool {
	nonce, _, ok := strings.Cut(tok, ".")
	return ok && nonce != "" && hmac.Equal([]byte(h.signReport(nonce)), []byte(tok))
}

// reportToken returns the form's token: the visitor's cookie's, if it is
// one this process signed, else a new one set in the cookie.
func (h *Handler) reportToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(reportCookie); err == nil && h.validReportToken(c.Value) {
		return c.Value
	}
	tok := h.signReport(randomToken())
	setCookie(w, r, reportCookie, tok, 24*3600)
	return tok
}

// reportTokenSlot stands for the visitor's report token in a cached
// dataset page (renderCached), so that one cached copy serves every
// visitor. Should a dataset's own text hold the slot, the visitor sees
// their own token there: nothing another visitor could use.
const reportTokenSlot = "__nii_report_token_slot__"

// datasetReportForm is the form for a dataset page.
func (h *Handler) datasetReportForm(w http.ResponseWriter, r *http.Request, cd *api.CatalogDataset) reportForm {
	d, _ := nii.ParseDatasetID(cd.ID)
	who := cd.Meta.PublisherName
	if who == "" {
		who = cd.Meta.Publisher
	}
	if who == "" {
		who = d.Org
	}
	f := h.newReportForm(d, who)
	f.CSRF = h.reportToken(w, r)
	return f
}

// reportProblem takes the form's post.
func (h *Handler) reportProblem(w http.ResponseWriter, r *http.Request) {
	d, err := nii.ParseDatasetID(r.PathValue("org") + "/" + r.PathValue("name"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxReportForm)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.problemStatus(w, r, http.StatusRequestEntityTooLarge,
				"Your report is too long: the message may be at most 8,000 characters, the name 200 and the email 254. Nothing was sent.", "too_large")
			return
		}
		h.problem(w, r, nii.Errorf(nii.ErrInvalid, "report form: %v", err))
		return
	}
	c, _ := r.Cookie(reportCookie)
	tok := r.PostFormValue("csrf")
	if c == nil || !same(tok, c.Value) || !h.validReportToken(tok) || !sameOrigin(r) {
		h.problemStatus(w, r, http.StatusForbidden, "The report form's security token is missing or out of date: go back to the dataset's page, reload it and send the report again.", "csrf")
		return
	}
	who := d.Org
	if cd, err := h.b.LookupDataset(d); err == nil {
		if cd.Meta.PublisherName != "" {
			who = cd.Meta.PublisherName
		} else if cd.Meta.Publisher != "" {
			who = cd.Meta.Publisher
		}
	}
	f := h.newReportForm(d, who)
	f.CSRF = tok
	f.Name, f.Email, f.Message = r.PostFormValue("name"), r.PostFormValue("email"), r.PostFormValue("message")
	status := http.StatusOK
	switch {
	case len(f.Name) > maxReportName || len(f.Email) > maxReportEmail || len(f.Message) > maxReportMessage:
		f.Err, status = "Your report is too long: the message may be at most 8,000 characters, the name 200 and the email 254. Shorten it and send it again.", http.StatusRequestEntityTooLarge
	case strings.TrimSpace(f.Message) == "":
		f.Err, status = "Say what the problem is: the message is empty.", http.StatusBadRequest
	default:
		rc, err := h.b.ReportProblem(r.Context(), d, api.ProblemSubmission{Name: f.Name, Email: f.Email, Message: f.Message})
		if err != nil {
			st, body := api.ErrorFor(err)
			f.Err, status = body.Error, st
			if errors.Is(err, nii.ErrUnavailable) {
				f.Err = "Your report could not be delivered: " + body.Error
			}
			break
		}
		f.Receipt = rc
		f.Name, f.Email, f.Message = "", "", ""
	}
	h.render(w, r, status, "report", "Report a problem", "catalogue", f)
}

// problemsData is the officer's list of reports.
type problemsData struct {
	CSRF     string
	Dataset  string
	State    string
	Problems []api.ProblemReport
	Closed   string
	Err      string
}

// problems lists the reports on this node's datasets, filtered by dataset
// and state; a post closes one.
func (h *Handler) problems(w http.ResponseWriter, r *http.Request, s *session) {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormField)
		if err := r.ParseForm(); err != nil {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "problems form: %v", err))
			return
		}
		if !h.checkCSRF(w, r, s, r.PostFormValue("csrf")) {
			return
		}
		id := r.PostFormValue("id")
		if _, err := h.b.CloseProblem(id); err != nil {
			h.problem(w, r, err)
			return
		}
		q := url.Values{"closed": {id}}
		for _, k := range []string{"dataset", "state"} {
			if v := r.PostFormValue(k); v != "" {
				q.Set(k, v)
			}
		}
		http.Redirect(w, r, "/officer/problems?"+q.Encode(), http.StatusSeeOther)
		return
	}
	v := r.URL.Query()
	pd := problemsData{CSRF: s.csrf, Dataset: v.Get("dataset"), State: v.Get("state"), Closed: v.Get("closed")}
	if !v.Has("state") {
		pd.State = api.ProblemOpen
	}
	ps, err := h.b.Problems(pd.Dataset, pd.State)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	pd.Problems = ps
	h.render(w, r, http.StatusOK, "problems", "Problem reports", "officer", pd)
}
