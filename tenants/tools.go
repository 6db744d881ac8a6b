package tenants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Limits on tool definitions.
const (
	// MaxInputSchemaBytes caps a tool's input schema: 64 KiB.
	MaxInputSchemaBytes = 64 << 10
	// MaxConditionBytes caps a tool's CEL condition: 4 KiB.
	MaxConditionBytes = 4 << 10
	// MaxToolDescriptionBytes caps a tool's description: 8 KiB.
	MaxToolDescriptionBytes = 8 << 10
)

// ToolInput creates or replaces a tool. See [Tool] for the fields.
type ToolInput struct {
	UpstreamID  uuid.UUID
	Name        string
	Title       string
	Description string
	// Method is GET, POST, PUT, PATCH or DELETE (case-insensitive).
	Method string
	// PathTemplate is appended to the upstream's base URL; {name} segments
	// are filled from the argument of that name.
	PathTemplate string
	QueryParams  []string
	BodyParams   []string
	// InputSchema is a JSON Schema with "type": "object"; empty means
	// {"type":"object"}.
	InputSchema    json.RawMessage
	RequiredScopes []string
	// Risk is read, write or destructive; empty derives it from the method
	// (GET read, DELETE destructive, others write).
	Risk              string
	Enabled           bool
	Condition         string
	ApprovalsRequired *int
	LogBodies         bool
}

// toolNameRE is the tool name rule, also enforced by the schema.
var toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// paramNameRE is the rule for {params} in path templates and argument names.
var paramNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

const toolColumns = `t.tenant_id, t.id, t.upstream_id, u.slug, u.name, t.name, t.title, t.description, t.method,
	t.path_template, t.query_params, t.body_params, t.input_schema, t.required_scopes, t.risk, t.enabled, t.condition,
	t.approvals_required, t.log_bodies, t.created_at, t.updated_at`

const toolFrom = ` FROM tools t JOIN upstreams u ON u.tenant_id = t.tenant_id AND u.id = t.upstream_id `

func scanTool(row pgx.Row) (Tool, error) {
	var t Tool
	var schema []byte
	var approvals pgtype.Int4
	err := row.Scan(&t.TenantID, &t.ID, &t.UpstreamID, &t.UpstreamSlug, &t.UpstreamName, &t.Name, &t.Title, &t.Description,
		&t.Method, &t.PathTemplate, &t.QueryParams, &t.BodyParams, &schema, &t.RequiredScopes, &t.Risk, &t.Enabled,
		&t.Condition, &approvals, &t.LogBodies, &t.CreatedAt, &t.UpdatedAt)
	t.InputSchema = json.RawMessage(schema)
	if approvals.Valid {
		n := int(approvals.Int32)
		t.ApprovalsRequired = &n
	}
	return t, err
}

// Tools lists the tenant's tools by name, with their upstream's slug and name.
func (s *Service) Tools(ctx context.Context, tenantID uuid.UUID) ([]Tool, error) {
	var out []Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+toolColumns+toolFrom+"WHERE t.tenant_id = $1 ORDER BY t.name", tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tool, error) { return scanTool(r) })
		return err
	})
	return out, err
}

// Tool returns one of the tenant's tools; ErrNotFound otherwise (including
// for another tenant's id).
func (s *Service) Tool(ctx context.Context, tenantID, id uuid.UUID) (Tool, error) {
	var t Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		t, err = scanTool(tx.QueryRow(ctx, "SELECT "+toolColumns+toolFrom+"WHERE t.tenant_id = $1 AND t.id = $2", tenantID, id))
		return err
	})
	return t, err
}

// ToolByName returns the tenant's tool with that name (as an MCP
// tools/call names it), or ErrNotFound.
func (s *Service) ToolByName(ctx context.Context, tenantID uuid.UUID, name string) (Tool, error) {
	if !toolNameRE.MatchString(name) {
		return Tool{}, ErrNotFound
	}
	var t Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		t, err = scanTool(tx.QueryRow(ctx, "SELECT "+toolColumns+toolFrom+"WHERE t.tenant_id = $1 AND t.name = $2", tenantID, name))
		return err
	})
	return t, err
}

// upstreamScopes returns the scopes an upstream of the tenant offers, or an
// *Error of kind ErrNotFound on field "upstream_id".
func upstreamScopes(ctx context.Context, tx pgx.Tx, tenantID, upstreamID uuid.UUID) ([]string, error) {
	var offered []string
	err := tx.QueryRow(ctx, "SELECT scopes_offered FROM upstreams WHERE tenant_id = $1 AND id = $2", tenantID, upstreamID).Scan(&offered)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &Error{Kind: ErrNotFound, Field: "upstream_id", Message: "that upstream doesn't exist; choose one of this tenant's upstreams"}
	}
	return offered, err
}

// CreateTool validates in and creates a tool. Errors are *Error with Field
// set (upstream_id, name, title, description, method, path_template,
// query_params, body_params, input_schema, required_scopes, risk,
// condition, approvals_required); a taken name is ErrConflict on "name"; an
// upstream that is not the tenant's is ErrNotFound on "upstream_id".
func (s *Service) CreateTool(ctx context.Context, tenantID uuid.UUID, in ToolInput) (Tool, error) {
	var t Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		t, err = s.insertTool(ctx, tx, tenantID, in)
		return err
	})
	if err != nil {
		return Tool{}, toolNameConflict(err, in.Name)
	}
	return t, nil
}

func (s *Service) insertTool(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, in ToolInput) (Tool, error) {
	if in.UpstreamID == uuid.Nil {
		return Tool{}, Invalid("upstream_id", "choose the upstream this tool calls")
	}
	offered, err := upstreamScopes(ctx, tx, tenantID, in.UpstreamID)
	if err != nil {
		return Tool{}, err
	}
	v, err := ValidateTool(in, offered)
	if err != nil {
		return Tool{}, err
	}
	var id uuid.UUID
	err = tx.QueryRow(ctx, `INSERT INTO tools (tenant_id, upstream_id, name, title, description, method, path_template,
			query_params, body_params, input_schema, required_scopes, risk, enabled, condition, approvals_required,
			log_bodies, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) RETURNING id`,
		tenantID, v.UpstreamID, v.Name, v.Title, v.Description, v.Method, v.PathTemplate, v.QueryParams, v.BodyParams,
		string(v.InputSchema), v.RequiredScopes, v.Risk, v.Enabled, v.Condition, v.ApprovalsRequired, v.LogBodies, s.now()).Scan(&id)
	if err != nil {
		return Tool{}, err
	}
	return scanTool(tx.QueryRow(ctx, "SELECT "+toolColumns+toolFrom+"WHERE t.tenant_id = $1 AND t.id = $2", tenantID, id))
}

// UpdateTool replaces a tool's definition with in, validated as in
// [Service.CreateTool]. ErrNotFound if the tenant has no such tool.
func (s *Service) UpdateTool(ctx context.Context, tenantID, id uuid.UUID, in ToolInput) (Tool, error) {
	var t Tool
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT true FROM tools WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenantID, id).Scan(&exists); err != nil {
			return err
		}
		if in.UpstreamID == uuid.Nil {
			return Invalid("upstream_id", "choose the upstream this tool calls")
		}
		offered, err := upstreamScopes(ctx, tx, tenantID, in.UpstreamID)
		if err != nil {
			return err
		}
		v, err := ValidateTool(in, offered)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tools SET upstream_id = $3, name = $4, title = $5, description = $6, method = $7,
				path_template = $8, query_params = $9, body_params = $10, input_schema = $11, required_scopes = $12,
				risk = $13, enabled = $14, condition = $15, approvals_required = $16, log_bodies = $17, updated_at = $18
			WHERE tenant_id = $1 AND id = $2`,
			tenantID, id, v.UpstreamID, v.Name, v.Title, v.Description, v.Method, v.PathTemplate, v.QueryParams,
			v.BodyParams, string(v.InputSchema), v.RequiredScopes, v.Risk, v.Enabled, v.Condition, v.ApprovalsRequired,
			v.LogBodies, s.now()); err != nil {
			return err
		}
		t, err = scanTool(tx.QueryRow(ctx, "SELECT "+toolColumns+toolFrom+"WHERE t.tenant_id = $1 AND t.id = $2", tenantID, id))
		return err
	})
	if err != nil {
		return Tool{}, toolNameConflict(err, in.Name)
	}
	return t, nil
}

func toolNameConflict(err error, name string) error {
	var fe *Error
	if errors.Is(err, ErrConflict) && !errors.As(err, &fe) {
		return &Error{Kind: ErrConflict, Field: "name", Message: "a tool named “" + strings.TrimSpace(name) + "” already exists; choose another name", Err: err}
	}
	return err
}

// SetToolEnabled turns a tool on or off. ErrNotFound if the tenant has no
// such tool.
func (s *Service) SetToolEnabled(ctx context.Context, tenantID, id uuid.UUID, enabled bool) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE tools SET enabled = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2", tenantID, id, enabled, s.now())
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// DeleteTool removes a tool. ErrNotFound if the tenant has no such tool.
func (s *Service) DeleteTool(ctx context.Context, tenantID, id uuid.UUID) error {
	return s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM tools WHERE tenant_id = $1 AND id = $2", tenantID, id)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// ValidateTool checks a tool definition without touching the database and
// returns it normalised (trimmed, method upper-cased, schema compacted, risk
// derived when empty). offered are the upstream's offered scopes; when
// there are any, required scopes must be among them. Errors are *Error with
// Field set.
func ValidateTool(in ToolInput, offered []string) (ToolInput, error) {
	v := in
	v.Name = strings.TrimSpace(in.Name)
	v.Title = strings.TrimSpace(in.Title)
	v.Description = strings.TrimSpace(in.Description)
	v.Method = strings.ToUpper(strings.TrimSpace(in.Method))
	v.PathTemplate = strings.TrimSpace(in.PathTemplate)
	v.Risk = strings.TrimSpace(in.Risk)
	v.Condition = strings.TrimSpace(in.Condition)
	if v.UpstreamID == uuid.Nil {
		return v, Invalid("upstream_id", "choose the upstream this tool calls")
	}
	if !toolNameRE.MatchString(v.Name) {
		return v, Invalid("name", "the name must be 1 to 64 letters, digits, '_', '.' or '-'")
	}
	switch {
	case utf8.RuneCountInString(v.Title) > 200:
		return v, Invalid("title", "use at most 200 characters")
	case !utf8.ValidString(v.Title) || strings.IndexFunc(v.Title, unicode.IsControl) >= 0:
		return v, Invalid("title", "the title can't contain control characters")
	case len(v.Description) > MaxToolDescriptionBytes:
		return v, Invalid("description", fmt.Sprintf("the description is too long (at most %d KiB)", MaxToolDescriptionBytes>>10))
	case !utf8.ValidString(v.Description) || strings.ContainsRune(v.Description, 0):
		return v, Invalid("description", "the description is not valid text")
	}
	switch v.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		return v, Invalid("method", "the method must be GET, POST, PUT, PATCH or DELETE")
	}
	pathParams, err := parsePathTemplate(v.PathTemplate)
	if err != nil {
		return v, err
	}
	schema, props, err := parseInputSchema(v.InputSchema)
	if err != nil {
		return v, err
	}
	v.InputSchema = schema
	used := map[string]string{}
	for _, p := range pathParams {
		if !props[p] {
			return v, Invalid("path_template", fmt.Sprintf("{%s} is not a property of the input schema; add it there", p))
		}
		used[p] = "the path"
	}
	for _, list := range []struct {
		field, where string
		names        *[]string
	}{
		{"query_params", "the query", &v.QueryParams},
		{"body_params", "the body", &v.BodyParams},
	} {
		out := make([]string, 0, len(*list.names))
		for _, n := range *list.names {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !props[n] {
				return v, Invalid(list.field, fmt.Sprintf("“%s” is not a property of the input schema; add it there", truncate(n, 64)))
			}
			if where, dup := used[n]; dup {
				return v, Invalid(list.field, fmt.Sprintf("“%s” is already sent in %s", n, where))
			}
			used[n] = list.where
			out = append(out, n)
		}
		*list.names = out
	}
	if v.Method == "GET" && len(v.BodyParams) > 0 {
		return v, Invalid("body_params", "a GET request has no body; send these as query parameters")
	}
	if v.RequiredScopes, err = normalizeScopes("required_scopes", in.RequiredScopes, 50); err != nil {
		return v, err
	}
	if len(offered) > 0 {
		for _, sc := range v.RequiredScopes {
			if !slices.Contains(offered, sc) {
				return v, Invalid("required_scopes", fmt.Sprintf("the upstream doesn't offer the scope “%s” (it offers %s)", sc, strings.Join(offered, ", ")))
			}
		}
	}
	switch v.Risk {
	case "":
		v.Risk = riskFor(v.Method)
	case RiskRead, RiskWrite, RiskDestructive:
	default:
		return v, Invalid("risk", "the risk must be read, write or destructive")
	}
	if v.ApprovalsRequired != nil && (*v.ApprovalsRequired < 1 || *v.ApprovalsRequired > 10) {
		return v, Invalid("approvals_required", "approvals must be between 1 and 10")
	}
	if len(v.Condition) > MaxConditionBytes {
		return v, Invalid("condition", fmt.Sprintf("the condition is too long (at most %d KiB)", MaxConditionBytes>>10))
	}
	if !utf8.ValidString(v.Condition) || strings.ContainsRune(v.Condition, 0) {
		return v, Invalid("condition", "the condition is not valid text")
	}
	return v, nil
}

// riskFor is the default risk of an HTTP method.
func riskFor(method string) string {
	switch method {
	case "GET":
		return RiskRead
	case "DELETE":
		return RiskDestructive
	}
	return RiskWrite
}

// parsePathTemplate checks a path template such as /tasks/{id} and returns
// its parameter names in order.
func parsePathTemplate(p string) ([]string, error) {
	const field = "path_template"
	switch {
	case p == "":
		return nil, Invalid(field, "enter the path, e.g. /tasks/{id}")
	case p[0] != '/':
		return nil, Invalid(field, "the path must start with /")
	case len(p) > 2000:
		return nil, Invalid(field, "the path is too long")
	case strings.ContainsAny(p, "?#"):
		return nil, Invalid(field, "the path can't contain ? or #; list query arguments under query parameters")
	case !utf8.ValidString(p) || strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return nil, Invalid(field, "the path can't contain spaces or control characters")
	}
	var params []string
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '}':
			return nil, Invalid(field, "the path has a } without a matching {")
		case '{':
			end := strings.IndexAny(p[i+1:], "{}")
			if end < 0 || p[i+1+end] != '}' {
				return nil, Invalid(field, "the path has a { without a matching }")
			}
			name := p[i+1 : i+1+end]
			if !paramNameRE.MatchString(name) {
				return nil, Invalid(field, fmt.Sprintf("{%s} is not a valid parameter name (1 to 64 letters, digits, '_', '.' or '-')", truncate(name, 64)))
			}
			if slices.Contains(params, name) {
				return nil, Invalid(field, fmt.Sprintf("{%s} appears twice in the path", name))
			}
			params = append(params, name)
			i += end + 1
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return nil, Invalid(field, "the path can't contain . or .. segments")
		}
	}
	return params, nil
}

// parseInputSchema checks that raw is a JSON object schema (type object,
// properties an object of schemas, required naming properties) no larger
// than MaxInputSchemaBytes and returns it compacted with its property names.
func parseInputSchema(raw json.RawMessage) (json.RawMessage, map[string]bool, error) {
	const field = "input_schema"
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{"type":"object"}`), map[string]bool{}, nil
	}
	if len(raw) > MaxInputSchemaBytes {
		return nil, nil, Invalid(field, fmt.Sprintf("the input schema is too large (at most %d KiB)", MaxInputSchemaBytes>>10))
	}
	if !json.Valid(raw) {
		return nil, nil, Invalid(field, "the input schema is not valid JSON")
	}
	if bytes.Contains(raw, []byte(`\u0000`)) {
		return nil, nil, Invalid(field, `the input schema can't contain the character \u0000`)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, nil, Invalid(field, "the input schema must be a JSON object")
	}
	var typ string
	if err := json.Unmarshal(top["type"], &typ); err != nil || typ != "object" {
		return nil, nil, Invalid(field, `the input schema must have "type": "object"`)
	}
	props := map[string]bool{}
	if rawProps, ok := top["properties"]; ok {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(rawProps, &m); err != nil || m == nil {
			return nil, nil, Invalid(field, `"properties" must be an object`)
		}
		for name, ps := range m {
			ps = bytes.TrimSpace(ps)
			if len(ps) == 0 || (ps[0] != '{' && !bytes.Equal(ps, []byte("true")) && !bytes.Equal(ps, []byte("false"))) {
				return nil, nil, Invalid(field, fmt.Sprintf("the schema of property “%s” must be an object", truncate(name, 64)))
			}
			props[name] = true
		}
	}
	if rawReq, ok := top["required"]; ok {
		var req []string
		if err := json.Unmarshal(rawReq, &req); err != nil {
			return nil, nil, Invalid(field, `"required" must be a list of property names`)
		}
		for _, r := range req {
			if !props[r] {
				return nil, nil, Invalid(field, fmt.Sprintf("“%s” is required but not a property", truncate(r, 64)))
			}
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, nil, Invalid(field, "the input schema is not valid JSON")
	}
	return json.RawMessage(buf.Bytes()), props, nil
}
