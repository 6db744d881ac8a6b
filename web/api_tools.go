package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
)

// apiTool is a tool agents can call.
type apiTool struct {
	ID                uuid.UUID       `json:"id"`
	UpstreamID        uuid.UUID       `json:"upstream_id"`
	UpstreamSlug      string          `json:"upstream_slug"`
	UpstreamName      string          `json:"upstream_name"`
	Name              string          `json:"name"`
	Title             string          `json:"title"`
	Description       string          `json:"description"`
	Method            string          `json:"method" doc:"GET, POST, PUT, PATCH or DELETE."`
	PathTemplate      string          `json:"path_template" doc:"Appended to the upstream's base URL; {name} segments are filled from arguments."`
	QueryParams       []string        `json:"query_params" doc:"Arguments sent as query parameters."`
	BodyParams        []string        `json:"body_params" doc:"Arguments sent as JSON body fields."`
	InputSchema       json.RawMessage `json:"input_schema" type:"object" doc:"JSON Schema of the arguments (type object)."`
	RequiredScopes    []string        `json:"required_scopes"`
	Risk              string          `json:"risk" doc:"read, write or destructive."`
	Enabled           bool            `json:"enabled"`
	Condition         string          `json:"condition" doc:"A CEL expression for the policy engine; empty for none."`
	ApprovalsRequired *int            `json:"approvals_required" doc:"Approvals a destructive call needs; null for the tenant default."`
	LogBodies         bool            `json:"log_bodies"`
	CreatedAt         time.Time       `json:"created_at"`
	UpdatedAt         time.Time       `json:"updated_at"`
}

// apiToolPage is a page of tools.
type apiToolPage struct {
	Items      []apiTool `json:"items"`
	NextCursor string    `json:"next_cursor" doc:"Pass as ?cursor= for the next page; empty on the last page."`
}

// apiToolInput defines or changes a tool; absent fields keep their values.
type apiToolInput struct {
	UpstreamID        *string          `json:"upstream_id,omitempty" doc:"The upstream this tool calls. Required on create."`
	Name              *string          `json:"name,omitempty" doc:"1 to 64 letters, digits, '_', '.' or '-'. Required on create."`
	Title             *string          `json:"title,omitempty"`
	Description       *string          `json:"description,omitempty"`
	Method            *string          `json:"method,omitempty" doc:"GET, POST, PUT, PATCH or DELETE. Required on create."`
	PathTemplate      *string          `json:"path_template,omitempty" doc:"e.g. /tasks/{id}. Required on create."`
	QueryParams       []string         `json:"query_params,omitempty"`
	BodyParams        []string         `json:"body_params,omitempty"`
	InputSchema       json.RawMessage  `json:"input_schema,omitempty" type:"object" doc:"A JSON Schema with type object; absent on create means {\"type\":\"object\"}."`
	RequiredScopes    []string         `json:"required_scopes,omitempty" doc:"Must be among the upstream's offered scopes, when it lists any."`
	Risk              *string          `json:"risk,omitempty" doc:"read, write or destructive; empty derives it from the method."`
	Enabled           *bool            `json:"enabled,omitempty"`
	Condition         *string          `json:"condition,omitempty"`
	ApprovalsRequired apiOptional[int] `json:"approvals_required,omitzero" doc:"1 to 10, or null for the tenant default."`
	LogBodies         *bool            `json:"log_bodies,omitempty"`
}

// apiImportRequest imports tools from an OpenAPI document.
type apiImportRequest struct {
	UpstreamID string          `json:"upstream_id" api:"required" doc:"The upstream the tools call. Required."`
	URL        string          `json:"url,omitempty" doc:"Where to fetch the document (through the egress guard). Give url or document."`
	Document   json.RawMessage `json:"document,omitempty" type:"object,string" doc:"The document inline: a JSON object, or a string holding JSON or YAML."`
	Select     []string        `json:"select,omitempty" doc:"Import only the tools with these names (as the preview names them)."`
	DryRun     bool            `json:"dry_run,omitempty" doc:"Preview the tools and store nothing."`
}

// apiImportPreview is the tools an import would create.
type apiImportPreview struct {
	Tools    []apiToolPreview `json:"tools"`
	Warnings []string         `json:"warnings" doc:"Operations skipped and tools that would fail, in sentences."`
}

// apiToolPreview is a tool an import would create.
type apiToolPreview struct {
	UpstreamID     uuid.UUID       `json:"upstream_id"`
	Name           string          `json:"name"`
	Title          string          `json:"title"`
	Description    string          `json:"description"`
	Method         string          `json:"method"`
	PathTemplate   string          `json:"path_template"`
	QueryParams    []string        `json:"query_params"`
	BodyParams     []string        `json:"body_params"`
	InputSchema    json.RawMessage `json:"input_schema" type:"object"`
	RequiredScopes []string        `json:"required_scopes"`
	Risk           string          `json:"risk"`
	Enabled        bool            `json:"enabled"`
}

// apiImportResult is the tools an import created.
type apiImportResult struct {
	Tools    []apiTool `json:"tools"`
	Warnings []string  `json:"warnings"`
}

func toAPITool(t tenants.Tool) apiTool {
	return apiTool{
		ID: t.ID, UpstreamID: t.UpstreamID, UpstreamSlug: t.UpstreamSlug, UpstreamName: t.UpstreamName, Name: t.Name,
		Title: t.Title, Description: t.Description, Method: t.Method, PathTemplate: t.PathTemplate,
		QueryParams: apiNonNil(t.QueryParams), BodyParams: apiNonNil(t.BodyParams), InputSchema: apiSchemaOrEmpty(t.InputSchema),
		RequiredScopes: apiNonNil(t.RequiredScopes), Risk: t.Risk, Enabled: t.Enabled, Condition: t.Condition,
		ApprovalsRequired: t.ApprovalsRequired, LogBodies: t.LogBodies, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
}

func apiSchemaOrEmpty(s json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(s)) == 0 {
		return json.RawMessage(`{"type":"object"}`)
	}
	return s
}

// apiToolBase is the input that leaves a tool as it is.
func apiToolBase(t tenants.Tool) tenants.ToolInput {
	return tenants.ToolInput{
		UpstreamID: t.UpstreamID, Name: t.Name, Title: t.Title, Description: t.Description, Method: t.Method,
		PathTemplate: t.PathTemplate, QueryParams: t.QueryParams, BodyParams: t.BodyParams, InputSchema: t.InputSchema,
		RequiredScopes: t.RequiredScopes, Risk: t.Risk, Enabled: t.Enabled, Condition: t.Condition,
		ApprovalsRequired: t.ApprovalsRequired, LogBodies: t.LogBodies,
	}
}

// apply overlays the fields present in in.
func (in apiToolInput) apply(dst *tenants.ToolInput) error {
	if in.UpstreamID != nil {
		id, err := apiParseID("upstream_id", *in.UpstreamID)
		if err != nil {
			return err
		}
		dst.UpstreamID = id
	}
	apiSet(&dst.Name, in.Name)
	apiSet(&dst.Title, in.Title)
	apiSet(&dst.Description, in.Description)
	apiSet(&dst.Method, in.Method)
	apiSet(&dst.PathTemplate, in.PathTemplate)
	apiSetSlice(&dst.QueryParams, in.QueryParams)
	apiSetSlice(&dst.BodyParams, in.BodyParams)
	if len(in.InputSchema) > 0 && string(in.InputSchema) != "null" {
		dst.InputSchema = in.InputSchema
	}
	apiSetSlice(&dst.RequiredScopes, in.RequiredScopes)
	apiSet(&dst.Risk, in.Risk)
	apiSet(&dst.Enabled, in.Enabled)
	apiSet(&dst.Condition, in.Condition)
	if in.ApprovalsRequired.Set {
		dst.ApprovalsRequired = nil
		if !in.ApprovalsRequired.Null {
			n := in.ApprovalsRequired.V
			dst.ApprovalsRequired = &n
		}
	}
	apiSet(&dst.LogBodies, in.LogBodies)
	return nil
}

func (s *Server) apiListTools(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	limit, after, err := apiPageParams(r)
	if err != nil {
		return err
	}
	var upstreamID uuid.UUID
	if v := r.URL.Query().Get("upstream_id"); v != "" {
		if upstreamID, err = apiParseID("upstream_id", v); err != nil {
			return err
		}
	}
	ts, err := s.cfg.Tenants.ToolsAfter(r.Context(), a.TenantID, upstreamID, after, limit)
	if err != nil {
		return err
	}
	out := apiToolPage{Items: make([]apiTool, 0, len(ts))}
	for _, t := range ts {
		out.Items = append(out.Items, toAPITool(t))
	}
	if len(ts) > 0 {
		out.NextCursor = apiNextCursor(len(ts) == limit, ts[len(ts)-1].Name)
	}
	return apiWriteJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateTool(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	var body apiToolInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	in := tenants.ToolInput{Enabled: true}
	if err := body.apply(&in); err != nil {
		return err
	}
	t, err := s.cfg.Tenants.CreateTool(r.Context(), a.TenantID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/tools/"+t.ID.String())
	return apiWriteJSON(w, http.StatusCreated, toAPITool(t))
}

func (s *Server) apiGetTool(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	t, err := s.cfg.Tenants.Tool(r.Context(), a.TenantID, id)
	if err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPITool(t))
}

func (s *Server) apiPatchTool(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	t, err := s.cfg.Tenants.Tool(r.Context(), a.TenantID, id)
	if err != nil {
		return err
	}
	var body apiToolInput
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	in := apiToolBase(t)
	if err := body.apply(&in); err != nil {
		return err
	}
	if t, err = s.cfg.Tenants.UpdateTool(r.Context(), a.TenantID, id, in); err != nil {
		return err
	}
	return apiWriteJSON(w, http.StatusOK, toAPITool(t))
}

func (s *Server) apiDeleteTool(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	id, err := apiPathID(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Tenants.DeleteTool(r.Context(), a.TenantID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiImportTools previews or imports tools from an OpenAPI document: the
// same ImportPreview and all-or-nothing ImportTools as the console.
func (s *Server) apiImportTools(w http.ResponseWriter, r *http.Request, a tenants.APIPrincipal) error {
	var body apiImportRequest
	if err := apiDecode(r, &body); err != nil {
		return err
	}
	upstreamID, err := apiParseID("upstream_id", body.UpstreamID)
	if err != nil {
		return err
	}
	ctx := r.Context()
	// Look the upstream up before fetching anything on the tenant's behalf.
	if _, err := s.cfg.Tenants.Upstream(ctx, a.TenantID, upstreamID); err != nil {
		if errors.Is(err, tenants.ErrNotFound) {
			return &tenants.Error{Kind: tenants.ErrNotFound, Field: "upstream_id", Message: "that upstream doesn't exist; use the id of one of this tenant's upstreams", Err: err}
		}
		return err
	}
	hasDoc := len(body.Document) > 0 && string(body.Document) != "null"
	var doc []byte
	switch {
	case body.URL != "" && hasDoc:
		return apiBadRequest("document", "give either url or document, not both")
	case body.URL != "":
		if doc, err = s.cfg.Tenants.FetchOpenAPI(ctx, body.URL); err != nil {
			return err
		}
	case hasDoc:
		doc = body.Document
		var text string
		if json.Unmarshal(doc, &text) == nil {
			doc = []byte(text) // a JSON or YAML document in a string
		}
	default:
		return apiBadRequest("url", "give the url of the OpenAPI document, or the document itself")
	}
	preview, warnings, err := s.cfg.Tenants.ImportPreview(ctx, a.TenantID, upstreamID, doc)
	if err != nil {
		return err
	}
	if body.Select != nil {
		picked := make([]tenants.ToolInput, 0, len(body.Select))
		for _, name := range body.Select {
			i := slices.IndexFunc(preview, func(t tenants.ToolInput) bool { return t.Name == name })
			if i < 0 {
				return apiBadRequest("select", fmt.Sprintf("the document has no operation that becomes a tool named %q; dry_run lists the names", name))
			}
			picked = append(picked, preview[i])
		}
		preview = picked
	}
	if body.DryRun {
		out := apiImportPreview{Tools: make([]apiToolPreview, 0, len(preview)), Warnings: apiNonNil(warnings)}
		for _, t := range preview {
			out.Tools = append(out.Tools, apiToolPreview{
				UpstreamID: t.UpstreamID, Name: t.Name, Title: t.Title, Description: t.Description, Method: t.Method,
				PathTemplate: t.PathTemplate, QueryParams: apiNonNil(t.QueryParams), BodyParams: apiNonNil(t.BodyParams),
				InputSchema: apiSchemaOrEmpty(t.InputSchema), RequiredScopes: apiNonNil(t.RequiredScopes), Risk: t.Risk,
				Enabled: t.Enabled,
			})
		}
		return apiWriteJSON(w, http.StatusOK, out)
	}
	created, err := s.cfg.Tenants.ImportTools(ctx, a.TenantID, upstreamID, preview)
	if err != nil {
		return err
	}
	out := apiImportResult{Tools: make([]apiTool, 0, len(created)), Warnings: apiNonNil(warnings)}
	for _, t := range created {
		out.Tools = append(out.Tools, toAPITool(t))
	}
	return apiWriteJSON(w, http.StatusCreated, out)
}
