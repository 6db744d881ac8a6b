package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/locksmithhq/locksmith/tenants"
	"github.com/locksmithhq/locksmith/web/views"
)

// The Tools pages.
//
//	GET  /console/t/{tenant}/tools[?q=&upstream=&risk=&after=]  the list, filtered, 50 a page
//	GET  /console/t/{tenant}/tools/new                          the add form
//	POST /console/t/{tenant}/tools                              create
//	GET  /console/t/{tenant}/tools/{id}                         the edit form
//	POST /console/t/{tenant}/tools/{id}                         update
//	POST /console/t/{tenant}/tools/{id}/enabled                 turn on or off
//	POST /console/t/{tenant}/tools/{id}/delete                  delete (typed name)
//	GET  /console/t/{tenant}/tools/import                       the OpenAPI import form
//	POST /console/t/{tenant}/tools/import/preview               read a document (URL or upload) into a preview
//	POST /console/t/{tenant}/tools/import                       import the picked operations, all or nothing

// toolsPageSize is how many tools one page of the list shows.
const toolsPageSize = 50

// openAPIFormBytes caps the body of the two OpenAPI import posts: the
// document (at most tenants.MaxOpenAPIBytes, uploaded, or carried from the
// preview to the import) plus the form around it.
const openAPIFormBytes = tenants.MaxOpenAPIBytes + 256<<10

// bodyLimit is the body cap the middleware applies to r, before routing:
// openAPIFormBytes for the console's OpenAPI import posts, the configured
// MaxBodyBytes for everything else.
func (s *Server) bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && isOpenAPIImportPath(r.URL.Path) && s.cfg.MaxBodyBytes < openAPIFormBytes {
		return openAPIFormBytes
	}
	return s.cfg.MaxBodyBytes
}

// isOpenAPIImportPath matches /console/t/{tenant}/tools/import[/preview].
func isOpenAPIImportPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/console/t/")
	if !ok {
		return false
	}
	slug, tail, ok := strings.Cut(rest, "/")
	return ok && slug != "" && (tail == "tools/import" || tail == "tools/import/preview")
}

var toolFields = []fieldLabel{
	{"name", "tool-name", "Name"},
	{"title", "tool-title", "Title"},
	{"description", "tool-description", "Description"},
	{"input_schema", "tool-input-schema", "Input JSON Schema"},
	{"upstream_id", "tool-upstream", "Upstream"},
	{"method", "tool-method", "HTTP method"},
	{"path_template", "tool-path", "Path template"},
	{"query_params", "tool-query-params", "Query parameters"},
	{"body_params", "tool-body-params", "Body parameters"},
	{"required_scopes", "tool-scopes", "Required scopes"},
	{"risk", "tool-risk", "Risk"},
	{"condition", "tool-condition", "Condition"},
}

func toolsHref(slug string) string { return views.SectionHref(slug, "tools") }

func toolHref(slug string, id uuid.UUID) string { return toolsHref(slug) + "/" + id.String() }

// toolFilter is the list's search and filters.
type toolFilter struct {
	q, upstream, risk, after string
}

func (f toolFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"q": f.q, "upstream": f.upstream, "risk": f.risk, "after": f.after} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

func (f toolFilter) match(t tenants.Tool) bool {
	if f.upstream != "" && t.UpstreamSlug != f.upstream {
		return false
	}
	if f.risk != "" && t.Risk != f.risk {
		return false
	}
	if f.q == "" {
		return true
	}
	q := strings.ToLower(f.q)
	for _, s := range []string{t.Name, t.Title, t.Description, t.PathTemplate, t.UpstreamName} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
}

// toolsModel builds the list: filter, then keyset pagination by name.
func toolsModel(f views.Frame, tools []tenants.Tool, ups []tenants.Upstream, flt toolFilter) views.ToolsPage {
	slug := f.Tenant.Slug
	p := views.ToolsPage{Frame: f, Total: len(tools), Query: flt.q, Upstream: flt.upstream, Risk: flt.risk, HasUpstreams: len(ups) > 0}
	for _, u := range ups {
		p.Upstreams = append(p.Upstreams, views.Option{Value: u.Slug, Label: u.Name})
	}
	var matching []tenants.Tool
	for _, t := range tools {
		if flt.match(t) {
			matching = append(matching, t)
		}
	}
	slices.SortFunc(matching, func(a, b tenants.Tool) int { return strings.Compare(a.Name, b.Name) })
	p.Matching = len(matching)
	start := 0
	if flt.after != "" {
		start, _ = slices.BinarySearchFunc(matching, flt.after, func(t tenants.Tool, name string) int {
			if t.Name <= name {
				return -1
			}
			return 1
		})
		first := flt
		first.after = ""
		p.FirstHref = toolsHref(slug) + queryString(first.values())
	}
	page := matching[start:]
	if len(page) > toolsPageSize {
		page = page[:toolsPageSize]
		next := flt
		next.after = page[len(page)-1].Name
		p.NextHref = toolsHref(slug) + queryString(next.values())
	}
	for _, t := range page {
		p.Rows = append(p.Rows, views.ToolRow{
			Name: t.Name, Title: t.Title, Description: firstParagraph(t.Description, 160), Upstream: t.UpstreamName,
			Method: t.Method, Path: t.PathTemplate, Scopes: t.RequiredScopes, Risk: t.Risk, Enabled: t.Enabled,
			Href: toolHref(slug, t.ID), ToggleHref: toolHref(slug, t.ID) + "/enabled",
		})
	}
	return p
}

func queryString(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// firstParagraph is the first paragraph of s (an imported description is
// the summary, a blank line, then the description) on one line, at most n
// runes.
func firstParagraph(s string, n int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n\n")
	return truncateText(strings.Join(strings.Fields(s), " "), n)
}

func (s *Server) toolsPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	f, err := s.registrationFrame(r, c, "tools")
	if err != nil {
		return err
	}
	tools, err := s.cfg.Tenants.Tools(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	ups, err := s.cfg.Tenants.Upstreams(r.Context(), c.Tenant.ID)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	flt := toolFilter{q: strings.TrimSpace(q.Get("q")), upstream: q.Get("upstream"), risk: q.Get("risk"), after: q.Get("after")}
	return s.render(w, r, http.StatusOK, views.Tools(toolsModel(f, tools, ups, flt)))
}

// toolFromPath loads the {id} tool of the tenant; an id that is not the
// tenant's is a 404 like any unknown page.
func (s *Server) toolFromPath(r *http.Request, c consoleCtx) (tenants.Tool, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return tenants.Tool{}, &statusError{status: http.StatusNotFound, msg: "there is no such tool in this tenant"}
	}
	t, err := s.cfg.Tenants.Tool(r.Context(), c.Tenant.ID, id)
	if errors.Is(err, tenants.ErrNotFound) {
		return tenants.Tool{}, &statusError{status: http.StatusNotFound, msg: "there is no such tool in this tenant"}
	}
	return t, err
}

// toolFormFrom is the form of a stored tool.
func toolFormFrom(t tenants.Tool) views.ToolForm {
	schema := string(t.InputSchema)
	var pretty strings.Builder
	if len(t.InputSchema) > 0 {
		var v any
		if json.Unmarshal(t.InputSchema, &v) == nil {
			if b, err := json.MarshalIndent(v, "", "  "); err == nil {
				pretty.Write(b)
				schema = pretty.String()
			}
		}
	}
	return views.ToolForm{
		UpstreamID: t.UpstreamID.String(), Name: t.Name, Title: t.Title, Description: t.Description, Method: t.Method,
		PathTemplate: t.PathTemplate, QueryParams: strings.Join(t.QueryParams, ", "), BodyParams: strings.Join(t.BodyParams, ", "),
		InputSchema: schema, RequiredScopes: strings.Join(t.RequiredScopes, " "), Risk: t.Risk, Enabled: t.Enabled,
		Condition: t.Condition,
	}
}

// splitList splits a typed list on commas and whitespace.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// readToolForm reads the posted tool form.
func readToolForm(r *http.Request) (views.ToolForm, tenants.ToolInput, error) {
	v := func(k string) string { return r.PostFormValue(k) }
	f := views.ToolForm{
		UpstreamID: v("upstream_id"), Name: v("name"), Title: v("title"), Description: v("description"), Method: v("method"),
		PathTemplate: v("path_template"), QueryParams: v("query_params"), BodyParams: v("body_params"),
		InputSchema: v("input_schema"), RequiredScopes: v("required_scopes"), Risk: v("risk"), Enabled: v("enabled") != "",
		Condition: v("condition"),
	}
	in := tenants.ToolInput{
		Name: f.Name, Title: f.Title, Description: f.Description, Method: f.Method, PathTemplate: f.PathTemplate,
		QueryParams: splitList(f.QueryParams), BodyParams: splitList(f.BodyParams), RequiredScopes: strings.Fields(f.RequiredScopes),
		Risk: f.Risk, Enabled: f.Enabled, Condition: f.Condition,
	}
	if strings.TrimSpace(f.InputSchema) != "" {
		in.InputSchema = json.RawMessage(f.InputSchema)
	}
	if strings.TrimSpace(f.UpstreamID) != "" {
		id, err := uuid.Parse(strings.TrimSpace(f.UpstreamID))
		if err != nil {
			return f, in, tenants.Invalid("upstream_id", "choose one of this tenant's upstreams")
		}
		in.UpstreamID = id
	}
	return f, in, nil
}

// upstreamOptions are the tenant's upstreams for a select (value: id).
func (s *Server) upstreamOptions(r *http.Request, c consoleCtx) ([]views.Option, []tenants.Upstream, error) {
	ups, err := s.cfg.Tenants.Upstreams(r.Context(), c.Tenant.ID)
	if err != nil {
		return nil, nil, err
	}
	out := make([]views.Option, 0, len(ups))
	for _, u := range ups {
		out = append(out, views.Option{Value: u.ID.String(), Label: u.Name + " (" + u.Slug + ")"})
	}
	return out, ups, nil
}

// toolFormModel builds the add (existing nil) or edit page around form.
func (s *Server) toolFormModel(r *http.Request, c consoleCtx, form views.ToolForm, existing *tenants.Tool) (views.ToolFormPage, error) {
	f, err := s.registrationFrame(r, c, "tools")
	if err != nil {
		return views.ToolFormPage{}, err
	}
	opts, _, err := s.upstreamOptions(r, c)
	if err != nil {
		return views.ToolFormPage{}, err
	}
	p := views.ToolFormPage{Frame: f, IsNew: existing == nil, Form: form, Upstreams: opts}
	if existing == nil {
		p.Title, p.Action = "Add a tool", toolsHref(c.Tenant.Slug)
	} else {
		href := toolHref(c.Tenant.Slug, existing.ID)
		p.Title, p.Action, p.DeleteAction = existing.Name, href, href+"/delete"
	}
	return p, nil
}

func (s *Server) newToolPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	form := views.ToolForm{Method: "GET", Enabled: true, UpstreamID: r.URL.Query().Get("upstream")}
	p, err := s.toolFormModel(r, c, form, nil)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.ToolEdit(p))
}

func (s *Server) editToolPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	t, err := s.toolFromPath(r, c)
	if err != nil {
		return err
	}
	p, err := s.toolFormModel(r, c, toolFormFrom(t), &t)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, views.ToolEdit(p))
}

// renderToolError shows the form again with err under its field.
func (s *Server) renderToolError(w http.ResponseWriter, r *http.Request, c consoleCtx, form views.ToolForm, existing *tenants.Tool, err error) error {
	var pub *tenants.Error
	if errors.Is(err, tenants.ErrNotFound) && errors.As(err, &pub) && pub.Field == "upstream_id" {
		// Another tenant's upstream, or one deleted meanwhile: a field error, not a 404.
		err = tenants.Invalid("upstream_id", pub.Message)
	}
	errs, status, ok := formErrors(err, fieldNames(toolFields)...)
	if !ok {
		return err
	}
	p, perr := s.toolFormModel(r, c, form, existing)
	if perr != nil {
		return perr
	}
	p.Errors, p.Summary = errs, summarize(errs, toolFields)
	return s.render(w, r, status, views.ToolEdit(p))
}

func (s *Server) createTool(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseForm(r); err != nil {
		return err
	}
	form, in, err := readToolForm(r)
	if err == nil {
		_, err = s.cfg.Tenants.CreateTool(r.Context(), c.Tenant.ID, in)
	}
	if err != nil {
		return s.renderToolError(w, r, c, form, nil, err)
	}
	return redirect(w, r, toolsHref(c.Tenant.Slug)+"?done=tool-created")
}

func (s *Server) updateTool(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	existing, err := s.toolFromPath(r, c)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	form, in, err := readToolForm(r)
	// What the form doesn't show is kept.
	in.ApprovalsRequired, in.LogBodies = existing.ApprovalsRequired, existing.LogBodies
	if err == nil {
		_, err = s.cfg.Tenants.UpdateTool(r.Context(), c.Tenant.ID, existing.ID, in)
	}
	if err != nil {
		return s.renderToolError(w, r, c, form, &existing, err)
	}
	return redirect(w, r, toolHref(c.Tenant.Slug, existing.ID)+"?done=tool-saved")
}

// setToolEnabled turns a tool on or off from the list, keeping its filters.
func (s *Server) setToolEnabled(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	t, err := s.toolFromPath(r, c)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	enabled, err := strconv.ParseBool(r.PostFormValue("enabled"))
	if err != nil {
		return &statusError{status: http.StatusBadRequest, msg: "the form could not be read; reload the page and try again"}
	}
	if err := s.cfg.Tenants.SetToolEnabled(r.Context(), c.Tenant.ID, t.ID, enabled); err != nil {
		return err
	}
	back := toolFilter{q: r.PostFormValue("q"), upstream: r.PostFormValue("upstream"), risk: r.PostFormValue("risk")}.values()
	done := "tool-disabled"
	if enabled {
		done = "tool-enabled"
	}
	back.Set("done", done)
	return redirect(w, r, toolsHref(c.Tenant.Slug)+queryString(back))
}

// deleteTool deletes a tool after its name was typed.
func (s *Server) deleteTool(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	t, err := s.toolFromPath(r, c)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if strings.TrimSpace(r.PostFormValue("confirm")) != t.Name {
		p, err := s.toolFormModel(r, c, toolFormFrom(t), &t)
		if err != nil {
			return err
		}
		p.Errors = fieldError("confirm", "type the tool's name exactly as shown to confirm")
		return s.render(w, r, http.StatusUnprocessableEntity, views.ToolEdit(p))
	}
	if err := s.cfg.Tenants.DeleteTool(r.Context(), c.Tenant.ID, t.ID); err != nil {
		return err
	}
	return redirect(w, r, toolsHref(c.Tenant.Slug)+"?done=tool-deleted")
}

// importModel builds the import page.
func (s *Server) importModel(r *http.Request, c consoleCtx) (views.ImportPage, []tenants.Upstream, error) {
	f, err := s.registrationFrame(r, c, "tools")
	if err != nil {
		return views.ImportPage{}, nil, err
	}
	opts, ups, err := s.upstreamOptions(r, c)
	if err != nil {
		return views.ImportPage{}, nil, err
	}
	return views.ImportPage{
		Frame: f, Upstreams: opts, PreviewAction: toolsHref(c.Tenant.Slug) + "/import/preview",
		MaxUploadLabel: fmt.Sprintf("%d MiB", tenants.MaxOpenAPIBytes>>20),
	}, ups, nil
}

func (s *Server) importPage(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	p, ups, err := s.importModel(r, c)
	if err != nil {
		return err
	}
	if len(ups) == 0 {
		p.Errors = fieldError("upstream_id", "add the upstream these operations belong to first, on the Upstreams page")
	}
	p.UpstreamID = r.URL.Query().Get("upstream")
	return s.render(w, r, http.StatusOK, views.ToolsImport(p))
}

// parseUpload parses a multipart form (or, for clients that send one, a
// url-encoded form) within openAPIFormBytes; its files stay in memory.
func parseUpload(r *http.Request) error {
	err := r.ParseMultipartForm(openAPIFormBytes)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, http.ErrNotMultipart):
		return parseForm(r)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return &statusError{status: http.StatusBadRequest, msg: "the form could not be read; reload the page and try again"}
}

// uploadedDocument returns the uploaded "file", or nil when none was chosen.
func uploadedDocument(r *http.Request) ([]byte, error) {
	if r.MultipartForm == nil || len(r.MultipartForm.File["file"]) == 0 {
		return nil, nil
	}
	fh := r.MultipartForm.File["file"][0]
	if fh.Size == 0 {
		return nil, nil
	}
	if fh.Size > tenants.MaxOpenAPIBytes {
		return nil, tenants.Invalid("document", fmt.Sprintf("the file is larger than %d MiB", tenants.MaxOpenAPIBytes>>20))
	}
	f, err := fh.Open()
	if err != nil {
		return nil, fmt.Errorf("web: open upload: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, tenants.MaxOpenAPIBytes+1))
	if err != nil {
		return nil, fmt.Errorf("web: read upload: %w", err)
	}
	return b, nil
}

// importTarget parses the posted upstream_id; a bad or foreign id is a
// field error.
func importTarget(r *http.Request, ups []tenants.Upstream) (tenants.Upstream, error) {
	id, err := uuid.Parse(strings.TrimSpace(r.PostFormValue("upstream_id")))
	if err == nil {
		for _, u := range ups {
			if u.ID == id {
				return u, nil
			}
		}
	}
	return tenants.Upstream{}, tenants.Invalid("upstream_id", "choose one of this tenant's upstreams")
}

// importErrorFields are the fields of the import form an error can be under.
var importErrorFields = []string{"upstream_id", "url", "document"}

// previewImport reads the document (the upload, else the URL) and shows
// one row per operation to pick from. Nothing is saved.
func (s *Server) previewImport(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseUpload(r); err != nil {
		return err
	}
	if r.MultipartForm != nil {
		defer r.MultipartForm.RemoveAll()
	}
	p, ups, err := s.importModel(r, c)
	if err != nil {
		return err
	}
	p.UpstreamID, p.URL = r.PostFormValue("upstream_id"), strings.TrimSpace(r.PostFormValue("url"))
	up, err := importTarget(r, ups)
	var doc []byte
	if err == nil {
		doc, err = uploadedDocument(r)
	}
	if err == nil && doc == nil {
		if p.URL == "" {
			err = tenants.Invalid("url", "enter the document's URL or choose a file to upload")
		} else {
			doc, err = s.cfg.Tenants.FetchOpenAPI(r.Context(), p.URL)
		}
	}
	var tools []tenants.ToolInput
	var warnings []string
	if err == nil {
		tools, warnings, err = s.cfg.Tenants.ImportPreview(r.Context(), c.Tenant.ID, up.ID, doc)
	}
	if err != nil {
		errs, status, ok := formErrors(err, importErrorFields...)
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.ToolsImport(p))
	}
	p.Preview = importPreviewModel(c, up, string(doc), tools, warnings, nil)
	return s.render(w, r, http.StatusOK, views.ToolsImport(p))
}

// importPreviewModel lays the previewed tools out as rows, attributing each
// warning that names a tool ("tool “x”: …") or an operation ("GET /x: …")
// to its row. picked nil selects every tool no warning says would fail.
func importPreviewModel(c consoleCtx, up tenants.Upstream, doc string, tools []tenants.ToolInput, warnings []string, picked map[int]bool) *views.ImportPreview {
	pv := &views.ImportPreview{UpstreamID: up.ID.String(), UpstreamName: up.Name, Document: doc,
		Action: toolsHref(c.Tenant.Slug) + "/import"}
	rows := make([]views.ImportRow, len(tools))
	blocked := make([]bool, len(tools))
	for i, t := range tools {
		rows[i] = views.ImportRow{Index: i, Name: t.Name, Description: firstParagraph(t.Description, 140), Method: t.Method,
			Path: t.PathTemplate, Scopes: t.RequiredScopes, Risk: t.Risk}
		if rows[i].Risk == "" {
			rows[i].Risk = riskOf(t.Method)
		}
	}
	for _, w := range warnings {
		placed := false
		for i, t := range tools {
			if rest, ok := strings.CutPrefix(w, "tool “"+t.Name+"”: "); ok {
				rows[i].Warnings = append(rows[i].Warnings, sentence(rest))
				blocked[i], placed = true, true
				break
			}
			if rest, ok := strings.CutPrefix(w, t.Method+" "+t.PathTemplate+": "); ok {
				rows[i].Warnings = append(rows[i].Warnings, sentence(rest))
				placed = true
				break
			}
		}
		if !placed {
			pv.Warnings = append(pv.Warnings, sentence(w))
		}
	}
	for i := range rows {
		if picked == nil {
			rows[i].Selected = !blocked[i]
		} else {
			rows[i].Selected = picked[i]
		}
	}
	pv.Rows = rows
	return pv
}

// riskOf is the default risk of a method, as the domain derives it.
func riskOf(method string) string {
	switch strings.ToUpper(method) {
	case http.MethodGet:
		return tenants.RiskRead
	case http.MethodDelete:
		return tenants.RiskDestructive
	}
	return tenants.RiskWrite
}

// importTools reads the carried document again and imports the picked
// operations in one transaction: all of them or none. On failure the
// preview is shown again, with the error naming the tool.
func (s *Server) importTools(w http.ResponseWriter, r *http.Request, c consoleCtx) error {
	if err := parseUpload(r); err != nil {
		return err
	}
	if r.MultipartForm != nil {
		defer r.MultipartForm.RemoveAll()
	}
	p, ups, err := s.importModel(r, c)
	if err != nil {
		return err
	}
	up, err := importTarget(r, ups)
	if err != nil {
		errs, status, _ := formErrors(err, importErrorFields...)
		p.Errors = errs
		return s.render(w, r, status, views.ToolsImport(p))
	}
	p.UpstreamID = up.ID.String()
	doc := r.PostFormValue("document")
	tools, warnings, err := s.cfg.Tenants.ImportPreview(r.Context(), c.Tenant.ID, up.ID, []byte(doc))
	if err != nil {
		errs, status, ok := formErrors(err, importErrorFields...)
		if !ok {
			return err
		}
		p.Errors = errs
		return s.render(w, r, status, views.ToolsImport(p))
	}
	picked := map[int]bool{}
	var selected []tenants.ToolInput
	for _, raw := range r.PostForm["pick"] {
		i, perr := strconv.Atoi(raw)
		if perr != nil || i < 0 || i >= len(tools) || picked[i] {
			continue
		}
		picked[i] = true
	}
	for i, t := range tools {
		if picked[i] {
			selected = append(selected, t)
		}
	}
	if _, err := s.cfg.Tenants.ImportTools(r.Context(), c.Tenant.ID, up.ID, selected); err != nil {
		var pub *tenants.Error
		if !errors.As(err, &pub) {
			return err
		}
		status := http.StatusUnprocessableEntity
		if errors.Is(err, tenants.ErrConflict) {
			status = http.StatusConflict
		}
		p.Errors = views.Errors{"": sentence(pub.Message) + " Nothing was imported; untick it or fix it, then import again."}
		p.Preview = importPreviewModel(c, up, doc, tools, warnings, picked)
		return s.render(w, r, status, views.ToolsImport(p))
	}
	return redirect(w, r, toolsHref(c.Tenant.Slug)+"?done=tools-imported")
}
