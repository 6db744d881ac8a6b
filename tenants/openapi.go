package tenants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"
)

// Limits of the OpenAPI import.
const (
	// MaxOpenAPIBytes caps an OpenAPI document, fetched or uploaded: 4 MiB.
	MaxOpenAPIBytes = 4 << 20
	// MaxImportTools caps the tools one import may create.
	MaxImportTools = 500
	// maxRefDepth bounds $ref chains and schema nesting.
	maxRefDepth = 32
	// maxSchemaNodes bounds the work of inlining one operation's schemas,
	// so that references fanning out can't blow up.
	maxSchemaNodes = 20000
	// maxDocumentNodes bounds the work of inlining for a whole document.
	maxDocumentNodes = 500000
)

// FetchOpenAPI downloads an OpenAPI document through the egress client
// (the URL is checked by the SSRF guard first) and returns its bytes, at
// most MaxOpenAPIBytes. Errors are *Error on field "url" with a message
// for the admin.
func (s *Service) FetchOpenAPI(ctx context.Context, rawURL string) ([]byte, error) {
	rawURL = strings.TrimSpace(rawURL)
	if u, err := url.Parse(rawURL); err != nil || !u.IsAbs() || u.Host == "" {
		return nil, Invalid("url", "enter the absolute https URL of the OpenAPI document")
	}
	if err := s.egress.CheckURL(ctx, rawURL); err != nil {
		return nil, &Error{Kind: ErrInvalid, Field: "url", Message: err.Error(), Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Field: "url", Message: "the URL could not be read", Err: err}
	}
	req.Header.Set("Accept", "application/json, application/yaml;q=0.9, */*;q=0.1")
	resp, err := s.egress.Do(req)
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Field: "url", Message: transportMessage("the OpenAPI document", rawURL, err), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Invalid("url", fmt.Sprintf("the server answered HTTP %d for %s", resp.StatusCode, rawURL))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxOpenAPIBytes+1))
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Field: "url", Message: transportMessage("the OpenAPI document", rawURL, err), Err: err}
	}
	if len(body) > MaxOpenAPIBytes {
		return nil, Invalid("url", fmt.Sprintf("the document is larger than %d MiB", MaxOpenAPIBytes>>20))
	}
	return body, nil
}

// ImportPreview turns an OpenAPI 3.0 or 3.1 document (JSON, or YAML) into
// one ToolInput per operation, attached to the tenant's upstream
// upstreamID, for the admin to review before [Service.ImportTools]. Each
// tool is named from the operationId (sanitised) or method and path; its
// description comes from summary and description; its input schema
// gathers path and query parameters and the properties of a JSON request
// body (local $refs resolved); its required scopes are the operation's
// (or the document's) oauth2 security requirement; its risk follows the
// method (GET read, POST/PUT/PATCH write, DELETE destructive).
// Operations that can't be expressed as a tool are skipped with a warning;
// tools that would fail validation (a scope the upstream doesn't offer, a
// name that is taken) are kept and warned about, so the import reports
// them. Errors: *Error on field "document" for an unreadable document;
// ErrNotFound if the upstream is not the tenant's.
func (s *Service) ImportPreview(ctx context.Context, tenantID, upstreamID uuid.UUID, doc []byte) ([]ToolInput, []string, error) {
	p, err := previewOpenAPI(doc, upstreamID)
	if err != nil {
		return nil, nil, err
	}
	up, err := s.Upstream(ctx, tenantID, upstreamID)
	if err != nil {
		return nil, nil, err
	}
	var existing []string
	err = s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT name FROM tools WHERE tenant_id = $1", tenantID)
		if err != nil {
			return err
		}
		existing, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	warnings := p.warnings
	if w := serverWarning(p.servers, up.BaseURL); w != "" {
		warnings = append([]string{w}, warnings...)
	}
	for _, t := range p.tools {
		if slices.Contains(existing, t.Name) {
			warnings = append(warnings, fmt.Sprintf("tool “%s”: a tool with this name already exists; rename or drop it before importing", t.Name))
		}
		if _, err := ValidateTool(t, up.ScopesOffered); err != nil {
			var fe *Error
			if errors.As(err, &fe) {
				warnings = append(warnings, fmt.Sprintf("tool “%s”: %s", t.Name, fe.Message))
			}
		}
	}
	return p.tools, warnings, nil
}

// ImportTools creates tools for the tenant's upstream upstreamID in one
// transaction: either all of them are created or none is. Every input is
// attached to upstreamID and validated as in [Service.CreateTool]; an
// error names the tool at fault ("tool “x”: …") and keeps its Field. A
// name used twice in the batch or already taken is ErrConflict.
func (s *Service) ImportTools(ctx context.Context, tenantID, upstreamID uuid.UUID, inputs []ToolInput) ([]Tool, error) {
	switch {
	case len(inputs) == 0:
		return nil, Invalid("tools", "choose at least one tool to import")
	case len(inputs) > MaxImportTools:
		return nil, Invalid("tools", fmt.Sprintf("import at most %d tools at once", MaxImportTools))
	}
	seen := map[string]bool{}
	for _, in := range inputs {
		n := strings.TrimSpace(in.Name)
		if seen[n] {
			return nil, &Error{Kind: ErrConflict, Field: "name", Message: fmt.Sprintf("tool “%s”: two tools in the import have this name", n)}
		}
		seen[n] = true
	}
	if _, err := s.Upstream(ctx, tenantID, upstreamID); err != nil {
		return nil, err
	}
	out := make([]Tool, 0, len(inputs))
	failed := -1
	err := s.inTenant(ctx, tenantID, func(tx pgx.Tx) error {
		for i, in := range inputs {
			in.UpstreamID = upstreamID
			t, err := s.insertTool(ctx, tx, tenantID, in)
			if err != nil {
				failed = i
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		if failed >= 0 {
			name := inputs[failed].Name
			return nil, namedToolError(name, toolNameConflict(err, name))
		}
		return nil, err
	}
	return out, nil
}

// namedToolError prefixes a user-facing error with the tool's name.
func namedToolError(name string, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return &Error{Kind: fe.Kind, Field: fe.Field, Message: fmt.Sprintf("tool “%s”: %s", strings.TrimSpace(name), fe.Message), Err: err}
	}
	return fmt.Errorf("tenants: import tool %q: %w", name, err)
}

// serverWarning notes when the document's server path is not part of the
// upstream's base URL: tool paths are relative to the base URL.
func serverWarning(servers []string, baseURL string) string {
	if len(servers) == 0 {
		return ""
	}
	su, err := url.Parse(servers[0])
	if err != nil || strings.Contains(servers[0], "{") {
		return ""
	}
	sp := strings.TrimRight(su.Path, "/")
	if sp == "" {
		return ""
	}
	bu, err := url.Parse(baseURL)
	if err != nil || strings.HasSuffix(strings.TrimRight(bu.Path, "/"), sp) {
		return ""
	}
	return fmt.Sprintf("the document's server is %s but the upstream's base URL is %s; tool paths are appended to the base URL, so it should probably end with %s", servers[0], baseURL, sp)
}

// openAPIPreview is the pure result of reading a document.
type openAPIPreview struct {
	tools    []ToolInput
	warnings []string
	servers  []string
}

// oaDoc is a decoded document: JSON values (map[string]any, []any,
// string, json.Number or numbers, bool, nil).
type oaDoc struct {
	root map[string]any
	// budget is how many more schema nodes may be copied for the document.
	budget int
}

// previewOpenAPI reads a document without any I/O.
func previewOpenAPI(doc []byte, upstreamID uuid.UUID) (openAPIPreview, error) {
	var p openAPIPreview
	root, err := decodeOpenAPI(doc)
	if err != nil {
		return p, err
	}
	d := &oaDoc{root: root, budget: maxDocumentNodes}
	version, _ := root["openapi"].(string)
	if !strings.HasPrefix(version, "3.") {
		if _, ok := root["swagger"]; ok {
			return p, Invalid("document", "this is a Swagger 2.0 document; convert it to OpenAPI 3 first (for example with swagger2openapi)")
		}
		return p, Invalid("document", `the document has no "openapi": "3.x" version; is it an OpenAPI 3 document?`)
	}
	if servers, ok := root["servers"].([]any); ok {
		for _, sv := range servers {
			if m, ok := sv.(map[string]any); ok {
				if u, ok := m["url"].(string); ok {
					p.servers = append(p.servers, u)
				}
			}
		}
	}
	paths, ok := root["paths"].(map[string]any)
	if !ok {
		return p, Invalid("document", `the document has no "paths" object`)
	}
	pathKeys := make([]string, 0, len(paths))
	for k := range paths {
		pathKeys = append(pathKeys, k)
	}
	sort.Strings(pathKeys)
	used := map[string]bool{}
	for _, path := range pathKeys {
		item, problem := d.derefObject(paths[path])
		if problem != "" {
			p.warnings = append(p.warnings, fmt.Sprintf("%s: skipped: %s", path, problem))
			continue
		}
		methods := make([]string, 0, len(item))
		for k := range item {
			methods = append(methods, k)
		}
		sort.Slice(methods, func(i, j int) bool { return methodRank(methods[i]) < methodRank(methods[j]) })
		for _, m := range methods {
			switch m {
			case "get", "put", "post", "patch", "delete":
			case "head", "options", "trace":
				p.warnings = append(p.warnings, fmt.Sprintf("%s %s: skipped: tools can only use GET, POST, PUT, PATCH and DELETE", strings.ToUpper(m), path))
				continue
			default:
				continue // summary, description, parameters, servers, extensions
			}
			op, ok := item[m].(map[string]any)
			if !ok {
				p.warnings = append(p.warnings, fmt.Sprintf("%s %s: skipped: the operation is not an object", strings.ToUpper(m), path))
				continue
			}
			if len(p.tools) >= MaxImportTools {
				p.warnings = append(p.warnings, fmt.Sprintf("only the first %d operations were read", MaxImportTools))
				return p, nil
			}
			t, ws, skip := d.operation(path, strings.ToUpper(m), item, op)
			label := fmt.Sprintf("%s %s", strings.ToUpper(m), path)
			if id, _ := op["operationId"].(string); id != "" {
				label += " (" + truncate(id, 64) + ")"
			}
			for _, w := range ws {
				p.warnings = append(p.warnings, label+": "+w)
			}
			if skip != "" {
				p.warnings = append(p.warnings, label+": skipped: "+skip)
				continue
			}
			t.Name = uniqueName(t.Name, used)
			t.UpstreamID = upstreamID
			p.tools = append(p.tools, t)
		}
	}
	if len(p.tools) == 0 {
		p.warnings = append(p.warnings, "the document has no operations that can become tools")
	}
	return p, nil
}

func methodRank(m string) int {
	switch m {
	case "get":
		return 0
	case "post":
		return 1
	case "put":
		return 2
	case "patch":
		return 3
	case "delete":
		return 4
	}
	return 5
}

// operation maps one operation to a tool. It returns warnings, and a
// reason when the operation has to be skipped.
func (d *oaDoc) operation(path, method string, item, op map[string]any) (ToolInput, []string, string) {
	var warnings []string
	in := &inliner{doc: d, budget: maxSchemaNodes}
	opID, _ := op["operationId"].(string)
	summary, _ := op["summary"].(string)
	description, _ := op["description"].(string)
	if dep, _ := op["deprecated"].(bool); dep {
		warnings = append(warnings, "the operation is deprecated")
	}
	t := ToolInput{
		Name:         toolName(opID, method, path),
		Title:        clip(oneLine(summary), 200),
		Description:  clipBytes(joinText(summary, description), MaxToolDescriptionBytes),
		Method:       method,
		PathTemplate: path,
		Risk:         riskFor(method),
		Enabled:      true,
	}

	props := map[string]any{}
	var required []string
	where := map[string]string{}
	templateParams := PathParams(path)

	// Parameters: the path item's, overridden by the operation's (by in+name).
	type param struct {
		name, in string
		obj      map[string]any
	}
	var params []param
	index := map[string]int{}
	for _, src := range []any{item["parameters"], op["parameters"]} {
		list, _ := src.([]any)
		for _, raw := range list {
			obj, problem := d.derefObject(raw)
			if problem != "" {
				return t, warnings, "a parameter " + problem
			}
			name, _ := obj["name"].(string)
			loc, _ := obj["in"].(string)
			key := loc + "\x00" + name
			if i, ok := index[key]; ok {
				params[i].obj = obj
				continue
			}
			index[key] = len(params)
			params = append(params, param{name: name, in: loc, obj: obj})
		}
	}
	for _, p := range params {
		req, _ := p.obj["required"].(bool)
		switch p.in {
		case "path":
			if !slices.Contains(templateParams, p.name) {
				warnings = append(warnings, fmt.Sprintf("path parameter “%s” is not in the path; ignored", truncate(p.name, 64)))
				continue
			}
			req = true
		case "query":
		case "header", "cookie":
			if req {
				return t, warnings, fmt.Sprintf("it needs the %s parameter “%s”, which tools can't send", p.in, truncate(p.name, 64))
			}
			warnings = append(warnings, fmt.Sprintf("optional %s parameter “%s” is left out", p.in, truncate(p.name, 64)))
			continue
		default:
			return t, warnings, fmt.Sprintf("parameter “%s” has an unknown location %q", truncate(p.name, 64), truncate(p.in, 20))
		}
		if !paramNameRE.MatchString(p.name) {
			if req {
				return t, warnings, fmt.Sprintf("parameter “%s” has a name tools can't use (letters, digits, _ . - only)", truncate(p.name, 64))
			}
			warnings = append(warnings, fmt.Sprintf("optional parameter “%s” has a name tools can't use; left out", truncate(p.name, 64)))
			continue
		}
		if prev, dup := where[p.name]; dup {
			return t, warnings, fmt.Sprintf("“%s” is both a %s and a %s parameter", p.name, prev, p.in)
		}
		where[p.name] = p.in
		schema := paramSchema(p.obj)
		resolved, ok := in.schema(schema, 0, nil).(map[string]any)
		if in.problem != "" {
			return t, warnings, in.problem
		}
		if !ok {
			resolved = map[string]any{}
		}
		if desc, _ := p.obj["description"].(string); desc != "" {
			if _, has := resolved["description"]; !has {
				resolved["description"] = desc
			}
		}
		props[p.name] = resolved
		if req {
			required = append(required, p.name)
		}
		if p.in == "query" {
			t.QueryParams = append(t.QueryParams, p.name)
		}
	}
	for _, name := range templateParams {
		if _, ok := where[name]; !ok {
			if !paramNameRE.MatchString(name) {
				continue // ValidateTool reports the bad template
			}
			warnings = append(warnings, fmt.Sprintf("{%s} is not declared as a path parameter; added as a string", name))
			props[name] = map[string]any{"type": "string"}
			required = append(required, name)
			where[name] = "path"
		}
	}

	// The JSON request body's properties become arguments.
	if rb, ok := op["requestBody"]; ok {
		body, problem := d.derefObject(rb)
		if problem != "" {
			return t, warnings, "the request body " + problem
		}
		bodyRequired, _ := body["required"].(bool)
		content, _ := body["content"].(map[string]any)
		mediaType, media := jsonMedia(content)
		if media == nil {
			if len(content) > 0 {
				types := make([]string, 0, len(content))
				for k := range content {
					types = append(types, k)
				}
				sort.Strings(types)
				return t, warnings, "the request body is " + truncate(strings.Join(types, ", "), 100) + ", not JSON"
			}
		} else {
			resolved, _ := in.schema(media["schema"], 0, nil).(map[string]any)
			if in.problem != "" {
				return t, warnings, in.problem
			}
			bprops, breq, ok := objectProperties(resolved)
			if !ok {
				return t, warnings, "the " + mediaType + " request body is not a JSON object"
			}
			names := make([]string, 0, len(bprops))
			for k := range bprops {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, name := range names {
				ps, _ := bprops[name].(map[string]any)
				if ro, _ := ps["readOnly"].(bool); ro {
					continue
				}
				if !paramNameRE.MatchString(name) {
					if slices.Contains(breq, name) && bodyRequired {
						return t, warnings, fmt.Sprintf("body property “%s” has a name tools can't use", truncate(name, 64))
					}
					warnings = append(warnings, fmt.Sprintf("body property “%s” has a name tools can't use; left out", truncate(name, 64)))
					continue
				}
				if prev, dup := where[name]; dup {
					return t, warnings, fmt.Sprintf("“%s” is both a %s parameter and a body property", name, prev)
				}
				where[name] = "body"
				props[name] = bprops[name]
				t.BodyParams = append(t.BodyParams, name)
				if bodyRequired && slices.Contains(breq, name) {
					required = append(required, name)
				}
			}
			if len(bprops) == 0 {
				warnings = append(warnings, "the request body declares no properties; the tool sends none")
			}
		}
	}

	schema := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		sort.Strings(required)
		schema["required"] = slices.Compact(required)
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return t, warnings, "its schema can't be written as JSON"
	}
	if len(raw) > MaxInputSchemaBytes {
		return t, warnings, fmt.Sprintf("its input schema would exceed %d KiB", MaxInputSchemaBytes>>10)
	}
	t.InputSchema = raw
	scopes, multiple := d.scopes(op)
	t.RequiredScopes = scopes
	if multiple {
		warnings = append(warnings, "it accepts several sets of scopes; the first was chosen")
	}
	return t, warnings, ""
}

// paramSchema returns a parameter's schema: schema, or the schema of its
// first content entry, or a string.
func paramSchema(p map[string]any) any {
	if s, ok := p["schema"]; ok {
		return s
	}
	if content, ok := p["content"].(map[string]any); ok {
		keys := make([]string, 0, len(content))
		for k := range content {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if m, ok := content[k].(map[string]any); ok {
				if s, ok := m["schema"]; ok {
					return s
				}
			}
		}
	}
	return map[string]any{"type": "string"}
}

// jsonMedia picks the JSON media type of a request body's content.
func jsonMedia(content map[string]any) (string, map[string]any) {
	keys := make([]string, 0, len(content))
	for k := range content {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(k, ";", 2)[0]))
		if mt == "application/json" || strings.HasSuffix(mt, "+json") {
			m, _ := content[k].(map[string]any)
			if m == nil {
				m = map[string]any{}
			}
			return mt, m
		}
	}
	return "", nil
}

// objectProperties returns the properties and required names of an
// object schema, merging allOf members. ok is false for schemas that are
// not objects (arrays, scalars, oneOf/anyOf choices).
func objectProperties(s map[string]any) (map[string]any, []string, bool) {
	if s == nil {
		return map[string]any{}, nil, true // no schema: no arguments
	}
	if typ, ok := s["type"]; ok && !isObjectType(typ) {
		return nil, nil, false
	}
	_, hasOneOf := s["oneOf"]
	_, hasAnyOf := s["anyOf"]
	props := map[string]any{}
	var required []string
	if all, ok := s["allOf"].([]any); ok {
		for _, member := range all {
			m, _ := member.(map[string]any)
			p, r, ok := objectProperties(m)
			if !ok {
				return nil, nil, false
			}
			for k, v := range p {
				props[k] = v
			}
			required = append(required, r...)
		}
	} else if hasOneOf || hasAnyOf {
		return nil, nil, false
	}
	if p, ok := s["properties"].(map[string]any); ok {
		for k, v := range p {
			props[k] = v
		}
	}
	if r, ok := s["required"].([]any); ok {
		for _, x := range r {
			if name, ok := x.(string); ok {
				required = append(required, name)
			}
		}
	}
	return props, required, true
}

// isObjectType accepts "object" and 3.1's ["object", "null"].
func isObjectType(t any) bool {
	switch v := t.(type) {
	case string:
		return v == "object"
	case []any:
		for _, x := range v {
			if s, _ := x.(string); s != "object" && s != "null" {
				return false
			}
		}
		return slices.Contains(v, any("object"))
	}
	return false
}

// scopes returns the scopes of the operation's security requirement (or
// the document's): the first alternative that uses an oauth2 or
// openIdConnect scheme. multiple says other such alternatives exist.
func (d *oaDoc) scopes(op map[string]any) ([]string, bool) {
	reqs, ok := op["security"]
	if !ok {
		reqs = d.root["security"]
	}
	list, _ := reqs.([]any)
	schemes := map[string]any{}
	if comps, ok := d.root["components"].(map[string]any); ok {
		schemes, _ = comps["securitySchemes"].(map[string]any)
	}
	var chosen []string
	found := 0
	for _, alt := range list {
		m, _ := alt.(map[string]any)
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		var scopes []string
		isOAuth := false
		for _, name := range names {
			scheme, _ := d.derefObject(schemes[name])
			typ, _ := scheme["type"].(string)
			if typ != "oauth2" && typ != "openIdConnect" {
				continue
			}
			isOAuth = true
			vals, _ := m[name].([]any)
			for _, v := range vals {
				if s, ok := v.(string); ok && !slices.Contains(scopes, s) {
					scopes = append(scopes, s)
				}
			}
		}
		if !isOAuth {
			continue
		}
		found++
		if found == 1 {
			chosen = scopes
		}
	}
	return chosen, found > 1
}

// derefObject follows $ref (local only) to an object. problem is a phrase
// such as "has an unresolvable $ref …".
func (d *oaDoc) derefObject(v any) (map[string]any, string) {
	for hops := 0; hops <= maxRefDepth; hops++ {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "is not an object"
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ""
		}
		target, problem := d.pointer(ref)
		if problem != "" {
			return nil, problem
		}
		v = target
	}
	return nil, "has a $ref chain that is too long"
}

// pointer resolves a local reference "#/a/b~1c".
func (d *oaDoc) pointer(ref string) (any, string) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Sprintf("uses the $ref %q; only references inside the document (#/…) are supported", truncate(ref, 100))
	}
	frag, err := url.PathUnescape(ref[2:])
	if err != nil {
		frag = ref[2:]
	}
	var cur any = d.root
	for _, tok := range strings.Split(frag, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Sprintf("has an unresolvable $ref %q", truncate(ref, 100))
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Sprintf("has an unresolvable $ref %q", truncate(ref, 100))
			}
			cur = c[i]
		default:
			return nil, fmt.Sprintf("has an unresolvable $ref %q", truncate(ref, 100))
		}
	}
	return cur, ""
}

// inliner copies schemas with local $refs replaced by their targets. A
// reference to a schema being inlined (recursion) becomes {} (any value).
// problem is set when a reference can't be resolved or the schema is too
// large or deep.
type inliner struct {
	doc     *oaDoc
	budget  int
	problem string
}

// dataKeys hold values, not schemas: they are copied without resolving.
var dataKeys = map[string]bool{"example": true, "examples": true, "default": true, "enum": true, "const": true}

func (in *inliner) schema(v any, depth int, stack []string) any {
	if in.problem != "" {
		return nil
	}
	if !in.spend() {
		return nil
	}
	if depth > 2*maxRefDepth {
		in.problem = "its schemas are nested too deeply"
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			if slices.Contains(stack, ref) || len(stack) >= maxRefDepth {
				return map[string]any{}
			}
			target, problem := in.doc.pointer(ref)
			if problem != "" {
				in.problem = "its schema " + problem
				return nil
			}
			resolved := in.schema(target, depth+1, append(slices.Clip(stack), ref))
			if m, ok := resolved.(map[string]any); ok && len(x) > 1 {
				// 3.1 allows keywords next to $ref; they refine the target.
				merged := make(map[string]any, len(m)+len(x))
				for k, val := range m {
					merged[k] = val
				}
				for k, val := range x {
					if k != "$ref" {
						merged[k] = in.schema(val, depth+1, stack)
					}
				}
				return merged
			}
			return resolved
		}
		out := make(map[string]any, len(x))
		for k, val := range x {
			if dataKeys[k] {
				out[k] = in.copyValue(val, depth+1)
			} else {
				out[k] = in.schema(val, depth+1, stack)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = in.schema(val, depth+1, stack)
		}
		return out
	}
	return v
}

// spend counts one copied node against the operation's and the
// document's budgets; false (with problem set) when either is exhausted.
func (in *inliner) spend() bool {
	in.budget--
	in.doc.budget--
	switch {
	case in.budget < 0:
		in.problem = "its schemas are too large to inline"
	case in.doc.budget < 0:
		in.problem = "the document's schemas are too large in total to inline"
	default:
		return true
	}
	return false
}

func (in *inliner) copyValue(v any, depth int) any {
	if !in.spend() {
		return nil
	}
	if depth > 4*maxRefDepth {
		in.problem = "its schemas are nested too deeply"
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = in.copyValue(val, depth+1)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = in.copyValue(val, depth+1)
		}
		return out
	}
	return v
}

// decodeOpenAPI decodes a JSON or YAML document into JSON values.
func decodeOpenAPI(doc []byte) (map[string]any, error) {
	const field = "document"
	if len(doc) > MaxOpenAPIBytes {
		return nil, Invalid(field, fmt.Sprintf("the document is larger than %d MiB", MaxOpenAPIBytes>>20))
	}
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 {
		return nil, Invalid(field, "the document is empty")
	}
	var v any
	if trimmed[0] == '{' || trimmed[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, &Error{Kind: ErrInvalid, Field: field, Message: "the document is not valid JSON" + jsonErrorPlace(trimmed, err), Err: err}
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, Invalid(field, "the document is not valid JSON: there is more after the end of the top-level object")
		}
	} else {
		var err error
		if v, err = decodeYAML(trimmed); err != nil {
			return nil, &Error{Kind: ErrInvalid, Field: field, Message: "the document is neither JSON nor valid YAML: " + truncate(err.Error(), 200), Err: err}
		}
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, Invalid(field, "the document must be a JSON (or YAML) object")
	}
	return root, nil
}

// jsonErrorPlace renders where a JSON syntax error is, as " (line L,
// column C: message)".
func jsonErrorPlace(doc []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return " (it ends too early)"
		}
		return ""
	}
	off := int(min(se.Offset, int64(len(doc))))
	line := 1 + bytes.Count(doc[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(doc[:off], '\n')
	return fmt.Sprintf(" (line %d, column %d: %s)", line, col, se.Error())
}

// decodeYAML decodes YAML into JSON values. The YAML decoder's own limits
// stop alias bombs; a panic inside it is turned into an error.
func decodeYAML(doc []byte) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("the YAML could not be read")
		}
	}()
	var raw any
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		return nil, err
	}
	budget := 4 * MaxOpenAPIBytes
	return yamlToJSON(raw, 0, &budget)
}

func yamlToJSON(v any, depth int, budget *int) (any, error) {
	*budget--
	if *budget < 0 || depth > 1000 {
		return nil, errors.New("the YAML is too large or too deeply nested")
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			c, err := yamlToJSON(val, depth+1, budget)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			c, err := yamlToJSON(val, depth+1, budget)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			c, err := yamlToJSON(val, depth+1, budget)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x), nil
		}
		return x, nil
	case nil, string, bool, int, int64, uint64:
		return x, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case []byte:
		return string(x), nil
	}
	return fmt.Sprint(v), nil
}

// toolName sanitises an operationId (or method and path) into a tool name.
func toolName(opID, method, path string) string {
	base := opID
	if strings.TrimSpace(base) == "" {
		base = strings.ToLower(method) + "_" + path
	}
	var b strings.Builder
	lastUnderscore := false
	for _, r := range base {
		ok := r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
		if !ok || r == '_' {
			if !lastUnderscore {
				b.WriteByte('_')
			}
			lastUnderscore = true
			continue
		}
		b.WriteRune(r)
		lastUnderscore = false
	}
	name := strings.Trim(b.String(), "_.-")
	if len(name) > 64 {
		name = strings.TrimRight(name[:64], "_.-")
	}
	if name == "" {
		name = strings.ToLower(method) + "_root"
	}
	return name
}

// uniqueName returns name, or name_2, name_3, … when taken, and marks it used.
func uniqueName(name string, used map[string]bool) string {
	candidate := name
	for i := 2; used[candidate]; i++ {
		suffix := "_" + strconv.Itoa(i)
		candidate = name
		if len(candidate)+len(suffix) > 64 {
			candidate = candidate[:64-len(suffix)]
		}
		candidate += suffix
	}
	used[candidate] = true
	return candidate
}

// PathParams lists the distinct {names} in a path template such as
// /tasks/{id}, in order of first appearance, leniently (an unclosed brace
// ends the list). The importer, tool validation and the MCP endpoint's
// request builder share it.
func PathParams(path string) []string {
	var names []string
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			return names
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return names
		}
		if name := path[i+1 : i+j]; !slices.Contains(names, name) {
			names = append(names, name)
		}
		path = path[i+j+1:]
	}
}

func joinText(summary, description string) string {
	summary, description = strings.TrimSpace(summary), strings.TrimSpace(description)
	switch {
	case summary == "":
		return description
	case description == "" || description == summary:
		return summary
	}
	return summary + "\n\n" + description
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// clipBytes shortens s to at most n bytes on a rune boundary.
func clipBytes(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "")
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
