package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/nii-uk/nii/auth"
)

// send makes one request and decodes a JSON answer into out (if not nil).
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, admin bool, out any) error {
	resp, err := c.do(ctx, method, path, body, admin)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Trust lists the issuer keys the node trusts.
func (c *Client) Trust(ctx context.Context) ([]TrustInfo, error) {
	var out []TrustInfo
	return out, c.send(ctx, http.MethodGet, "/api/v1/trust", nil, false, &out)
}

// AddTrust makes the node trust the public key in key (a JWK or PEM).
func (c *Client) AddTrust(ctx context.Context, key []byte, name string) (*TrustInfo, error) {
	var out TrustInfo
	return &out, c.send(ctx, http.MethodPost, "/api/v1/trust?name="+url.QueryEscape(name), strings.NewReader(string(key)), true, &out)
}

// RemoveTrust stops the node trusting the key with ID kid.
func (c *Client) RemoveTrust(ctx context.Context, kid string) error {
	return c.send(ctx, http.MethodDelete, "/api/v1/trust/"+url.PathEscape(kid), nil, true, nil)
}

// Credential returns the node's membership credential.
func (c *Client) Credential(ctx context.Context) (*CredentialInfo, error) {
	var out CredentialInfo
	return &out, c.send(ctx, http.MethodGet, "/api/v1/credential", nil, false, &out)
}

// InstallCredential gives the node its membership credential.
func (c *Client) InstallCredential(ctx context.Context, token string) (*CredentialInfo, error) {
	var out CredentialInfo
	return &out, c.send(ctx, http.MethodPut, "/api/v1/credential", strings.NewReader(token), true, &out)
}

// Revocations lists the revocations the node holds.
func (c *Client) Revocations(ctx context.Context) ([]auth.Revocation, error) {
	var out []auth.Revocation
	return out, c.send(ctx, http.MethodGet, "/api/v1/revocations", nil, false, &out)
}

// Revoke hands the node a revocation to keep and spread.
func (c *Client) Revoke(ctx context.Context, token string) (*RevokeResult, error) {
	var out RevokeResult
	return &out, c.send(ctx, http.MethodPost, "/api/v1/revocations", strings.NewReader(token), true, &out)
}

// Inspect asks the node how it would judge a token.
func (c *Client) Inspect(ctx context.Context, body InspectBody) (*auth.Report, error) {
	b, _ := json.Marshal(body)
	var out auth.Report
	return &out, c.send(ctx, http.MethodPost, "/api/v1/grants/inspect", strings.NewReader(string(b)), false, &out)
}

// Audit returns a page of the node's audit log.
func (c *Client) Audit(ctx context.Context, q url.Values) (*AuditPage, error) {
	var out AuditPage
	return &out, c.send(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, true, &out)
}
