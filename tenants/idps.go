package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// secretField is the seal field name of every client secret.
const secretField = "client_secret"

// maxSecretLen caps a client secret: 4096 bytes.
const maxSecretLen = 4096

// IdPInput is a create-or-update of the tenant's IdP registration. Empty
// claim names and a nil RequireATJWT take the preset's values.
type IdPInput struct {
	// Issuer is the OIDC issuer URL; it must match the discovery document exactly.
	Issuer string
	// Audience Token A must carry; "" means the tenant's MCP resource URL
	// ([Service.DefaultAudience]).
	Audience string
	// Preset is generic (the default when empty), okta, entra, auth0, keycloak or google.
	Preset string
	Claims ClaimMapping
	// RequireATJWT nil means the preset's value.
	RequireATJWT   *bool
	RequiredScopes []string
	// ClientID and ClientSecret are the OIDC client end users sign in with
	// on consent and approval pages.
	ClientID string
	// ClientSecret nil keeps the stored secret, "" removes it, anything
	// else replaces it (stored sealed).
	ClientSecret *string
}

// DefaultAudience is the audience Token A must carry when the IdP
// registration names none: the tenant's MCP resource URL,
// BaseURL + "/t/" + slug + "/mcp".
func (s *Service) DefaultAudience(slug string) string {
	return strings.TrimRight(s.baseURL, "/") + "/t/" + slug + "/mcp"
}

const idpColumns = `tenant_id, id, issuer, jwks_uri, audience, preset, claim_subject, claim_email, claim_groups,
	claim_scopes, claim_agent, require_at_jwt, required_scopes, client_id, client_secret_sealed IS NOT NULL,
	checked_at, check_ok, check_message, created_at, updated_at`

func scanIdP(row pgx.Row) (IdP, error) {
	var p IdP
	err := row.Scan(&p.TenantID, &p.ID, &p.Issuer, &p.JWKSURI, &p.Audience, &p.Preset, &p.Claims.Subject, &p.Claims.Email,
		&p.Claims.Groups, &p.Claims.Scopes, &p.Claims.Agent, &p.RequireATJWT, &p.RequiredScopes, &p.ClientID,
		&p.HasClientSecret, &p.CheckedAt, &p.CheckOK, &p.CheckMessage, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// IdP returns the tenant's IdP registration, or ErrNotFound when none is
// registered. The client secret is never returned.
func (s *Service) IdP(ctx context.Context, tenantID uuid.UUID) (IdP, error) {
	var p IdP
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		p, err = scanIdP(tx.QueryRow(ctx, "SELECT "+idpColumns+" FROM idp_registrations WHERE tenant_id = $1", tenantID))
		return err
	})
	return p, err
}

// validateIdPInput normalises in and checks everything that needs no I/O.
func validateIdPInput(in IdPInput) (IdPInput, bool, error) {
	in.Issuer = strings.TrimSpace(in.Issuer)
	in.Audience = strings.TrimSpace(in.Audience)
	in.Preset = strings.TrimSpace(in.Preset)
	in.ClientID = strings.TrimSpace(in.ClientID)
	if msg := issuerShape(in.Issuer); msg != "" {
		return in, false, Invalid("issuer", msg)
	}
	if in.Preset == "" {
		in.Preset = "generic"
	}
	preset, ok := LookupIdPPreset(in.Preset)
	if !ok {
		return in, false, Invalid("preset", "choose one of generic, okta, entra, auth0, keycloak or google")
	}
	if err := checkToken("audience", "the audience", in.Audience, 1000); err != nil {
		return in, false, err
	}
	c := &in.Claims
	for _, f := range []struct {
		field string
		v     *string
		def   string
	}{
		{"claims.subject", &c.Subject, preset.Claims.Subject},
		{"claims.email", &c.Email, preset.Claims.Email},
		{"claims.groups", &c.Groups, preset.Claims.Groups},
		{"claims.scopes", &c.Scopes, preset.Claims.Scopes},
		{"claims.agent", &c.Agent, preset.Claims.Agent},
	} {
		*f.v = strings.TrimSpace(*f.v)
		if *f.v == "" {
			*f.v = f.def
		}
		if err := checkToken(f.field, "a claim name", *f.v, 200); err != nil {
			return in, false, err
		}
	}
	if c.Subject == "" {
		return in, false, Invalid("claims.subject", "enter the claim that names the user, e.g. sub")
	}
	requireATJWT := preset.RequireATJWT
	if in.RequireATJWT != nil {
		requireATJWT = *in.RequireATJWT
	}
	scopes, err := normalizeScopes("required_scopes", in.RequiredScopes, 50)
	if err != nil {
		return in, false, err
	}
	in.RequiredScopes = scopes
	if err := checkToken("client_id", "the client ID", in.ClientID, 255); err != nil {
		return in, false, err
	}
	if in.ClientSecret != nil {
		if err := checkSecret(*in.ClientSecret); err != nil {
			return in, false, err
		}
		if *in.ClientSecret != "" && in.ClientID == "" {
			return in, false, Invalid("client_id", "enter the client ID that goes with the client secret")
		}
	}
	return in, requireATJWT, nil
}

// SaveIdP creates or updates the tenant's IdP registration. It validates
// the input (field errors name issuer, audience, preset, claims.*,
// required_scopes, client_id, client_secret), runs [Service.CheckIdP] and
// stores the jwks_uri it found with the check's outcome: a registration
// whose check found problems is stored with CheckOK false and the problems
// in CheckMessage, so the admin can fix the IdP side. An issuer the egress
// guard refuses or that does not resolve is refused with a field error on
// "issuer" and nothing is stored. The client secret is sealed to the row.
func (s *Service) SaveIdP(ctx context.Context, tenantID uuid.UUID, in IdPInput) (IdP, error) {
	in, requireATJWT, err := validateIdPInput(in)
	if err != nil {
		return IdP{}, err
	}
	check, refused := s.checkIdP(ctx, in.Issuer)
	if refused {
		return IdP{}, Invalid("issuer", strings.Join(check.Problems, "; "))
	}

	id := uuid.New()
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id FROM idp_registrations WHERE tenant_id = $1", tenantID).Scan(&id)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return IdP{}, fmt.Errorf("tenants: save idp: %w", err)
	}
	// Seal outside the transaction: the sealer opens its own.
	keepSecret := in.ClientSecret == nil
	var sealed []byte
	if !keepSecret && *in.ClientSecret != "" {
		if sealed, err = s.sealer.Seal(ctx, tenantID, id, secretField, []byte(*in.ClientSecret)); err != nil {
			return IdP{}, fmt.Errorf("tenants: save idp: seal client secret: %w", err)
		}
	}
	msg := checkMessage(check)
	var p IdP
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		p, err = scanIdP(tx.QueryRow(ctx, `INSERT INTO idp_registrations AS r (tenant_id, id, issuer, jwks_uri, audience, preset,
				claim_subject, claim_email, claim_groups, claim_scopes, claim_agent, require_at_jwt, required_scopes,
				client_id, client_secret_sealed, checked_at, check_ok, check_message, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $16)
			ON CONFLICT (tenant_id) DO UPDATE SET issuer = EXCLUDED.issuer, jwks_uri = EXCLUDED.jwks_uri,
				audience = EXCLUDED.audience, preset = EXCLUDED.preset, claim_subject = EXCLUDED.claim_subject,
				claim_email = EXCLUDED.claim_email, claim_groups = EXCLUDED.claim_groups,
				claim_scopes = EXCLUDED.claim_scopes, claim_agent = EXCLUDED.claim_agent,
				require_at_jwt = EXCLUDED.require_at_jwt, required_scopes = EXCLUDED.required_scopes,
				client_id = EXCLUDED.client_id,
				client_secret_sealed = CASE WHEN $19 THEN r.client_secret_sealed ELSE EXCLUDED.client_secret_sealed END,
				checked_at = EXCLUDED.checked_at, check_ok = EXCLUDED.check_ok, check_message = EXCLUDED.check_message,
				updated_at = EXCLUDED.updated_at
			WHERE r.id = EXCLUDED.id
			RETURNING `+idpColumns,
			tenantID, id, in.Issuer, check.Found.JWKSURI, in.Audience, in.Preset, in.Claims.Subject, in.Claims.Email,
			in.Claims.Groups, in.Claims.Scopes, in.Claims.Agent, requireATJWT, in.RequiredScopes, in.ClientID, sealed,
			check.CheckedAt, check.OK, msg, keepSecret))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		// Another save created the registration meanwhile, under another id.
		return IdP{}, &Error{Kind: ErrConflict, Field: "issuer", Message: "the IdP registration was changed at the same time; reload and try again", Err: err}
	}
	if err != nil {
		return IdP{}, fmt.Errorf("tenants: save idp: %w", err)
	}
	return p, nil
}

// checkMessage summarises a check for IdP.CheckMessage: the problems, then
// the warnings.
func checkMessage(c IdPCheck) string {
	parts := append([]string(nil), c.Problems...)
	for _, w := range c.Warnings {
		parts = append(parts, "warning: "+w)
	}
	return strings.Join(parts, "; ")
}

// RecheckIdP runs [Service.CheckIdP] against the registered issuer and
// stores the outcome and the jwks_uri found (when one was found). It
// returns ErrNotFound when no IdP is registered.
func (s *Service) RecheckIdP(ctx context.Context, tenantID uuid.UUID) (IdPCheck, error) {
	p, err := s.IdP(ctx, tenantID)
	if err != nil {
		return IdPCheck{}, err
	}
	check := s.CheckIdP(ctx, p.Issuer)
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE idp_registrations SET jwks_uri = COALESCE(NULLIF($3, ''), jwks_uri),
			checked_at = $4, check_ok = $5, check_message = $6 WHERE tenant_id = $1 AND id = $2`,
			tenantID, p.ID, check.Found.JWKSURI, check.CheckedAt, check.OK, checkMessage(check))
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
	return check, err
}

// DeleteIdP removes the tenant's IdP registration; ErrNotFound when none.
// Token A can no longer be validated for the tenant afterwards.
func (s *Service) DeleteIdP(ctx context.Context, tenantID uuid.UUID) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM idp_registrations WHERE tenant_id = $1", tenantID)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// IdPClientSecret opens the IdP's sealed client secret for end-user sign-in.
// It returns "" when none is set, ErrNotFound when no IdP is registered.
// Never log the result.
func (s *Service) IdPClientSecret(ctx context.Context, tenantID uuid.UUID) (string, error) {
	var id uuid.UUID
	var sealed []byte
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT id, client_secret_sealed FROM idp_registrations WHERE tenant_id = $1", tenantID).Scan(&id, &sealed)
	})
	if err != nil || sealed == nil {
		return "", err
	}
	pt, err := s.sealer.Open(ctx, tenantID, id, secretField, sealed)
	if err != nil {
		return "", fmt.Errorf("tenants: idp client secret: %w", err)
	}
	return string(pt), nil
}

// checkToken refuses values with spaces or control characters, invalid
// UTF-8, or longer than max bytes. "" passes. what names the value in the
// message ("the client ID").
func checkToken(field, what, v string, max int) error {
	switch {
	case !utf8.ValidString(v):
		return Invalid(field, what+" is not valid text")
	case len(v) > max:
		return Invalid(field, fmt.Sprintf("%s is too long (at most %d characters)", what, max))
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return Invalid(field, what+" can't contain spaces or control characters")
	}
	return nil
}

// checkSecret validates a client secret (not its content, only its shape).
func checkSecret(v string) error {
	switch {
	case len(v) > maxSecretLen:
		return Invalid("client_secret", fmt.Sprintf("the client secret is too long (at most %d bytes)", maxSecretLen))
	case !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0:
		return Invalid("client_secret", "the client secret can't contain control characters; paste it again")
	}
	return nil
}

// validScope reports whether s is an RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
func validScope(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// normalizeScopes trims, drops empties and duplicates (keeping order), and
// validates each scope. It never returns nil.
func normalizeScopes(field string, in []string, max int) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, sc := range in {
		// A pasted "a b c" is three scopes.
		for _, s := range strings.Fields(sc) {
			if !validScope(s) {
				return nil, Invalid(field, fmt.Sprintf("%q is not a valid scope (printable ASCII without spaces, quotes or backslashes)", truncate(s, 60)))
			}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	if len(out) > max {
		return nil, Invalid(field, fmt.Sprintf("use at most %d scopes", max))
	}
	return out, nil
}

// truncate shortens s to at most n runes for messages.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
