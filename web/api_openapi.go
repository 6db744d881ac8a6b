package web

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The OpenAPI 3.1 document of the admin API, served at
// GET /api/v1/openapi.json. It is generated from the route table
// (apiRouteTable) and the request and response types, whose `doc` struct
// tags are the field descriptions, so it can't drift from the handlers.

// apiOperation documents one route.
type apiOperation struct {
	// id is the operationId.
	id, tag, summary, doc string
	query                 []apiParam
	// body is the request body type (a zero value), nil for none.
	body any
	// status is the success status; 0 means 200.
	status int
	// resp is the success response body type, nil for none.
	resp any
	// alt is a second success response (the import's dry run).
	alt *apiAltResponse
}

// apiParam is a query parameter.
type apiParam struct{ name, typ, format, doc string }

// apiAltResponse is a second success response of an operation.
type apiAltResponse struct {
	status int
	doc    string
	resp   any
}

// apiProblemResponses names the problem responses by status.
var apiProblemResponses = map[int]struct{ name, doc string }{
	http.StatusBadRequest:            {"BadRequest", "The input was refused; field names the input at fault."},
	http.StatusUnauthorized:          {"Unauthorized", "No API key, or a malformed, unknown or revoked one."},
	http.StatusForbidden:             {"Forbidden", "A viewer key tried to change something."},
	http.StatusNotFound:              {"NotFound", "No such object for this tenant (objects of other tenants are not found either)."},
	http.StatusConflict:              {"Conflict", "The change clashes with what exists (a taken slug or name)."},
	http.StatusRequestEntityTooLarge: {"TooLarge", "The body is larger than 1 MiB."},
	http.StatusUnsupportedMediaType:  {"UnsupportedMediaType", "The body is not application/json."},
	http.StatusInternalServerError:   {"ServerError", "Something failed on our side; quote the request_id."},
}

// apiOpenAPIDocument builds the document for the API served at baseURL.
func apiOpenAPIDocument(baseURL string, routes []apiRoute) map[string]any {
	g := &apiSchemaGen{schemas: map[string]any{}}
	g.schemas["Problem"] = apiObj{
		"type":        "object",
		"description": "An RFC 9457 problem details object (application/problem+json).",
		"required":    []string{"type", "title", "status"},
		"properties": apiObj{
			"type":       apiObj{"type": "string", "description": "Always about:blank."},
			"title":      apiObj{"type": "string", "description": "The HTTP status text."},
			"status":     apiObj{"type": "integer"},
			"detail":     apiObj{"type": "string", "description": "What went wrong, written for a person."},
			"field":      apiObj{"type": "string", "description": "The input field at fault, for validation errors (e.g. issuer, claims.subject)."},
			"request_id": apiObj{"type": "string", "description": "Also in the X-Request-Id header."},
		},
	}
	responses := apiObj{}
	for status, p := range apiProblemResponses {
		r := apiObj{
			"description": p.doc,
			"content":     apiObj{"application/problem+json": apiObj{"schema": apiSchemaRef("Problem")}},
		}
		if status == http.StatusUnauthorized {
			r["headers"] = apiObj{"WWW-Authenticate": apiObj{
				"description": `Bearer realm="locksmith-api", with error="invalid_token" for a bad key.`,
				"schema":      apiObj{"type": "string"},
			}}
		}
		responses[p.name] = r
	}

	paths := apiObj{
		"/api/v1/openapi.json": apiObj{"get": apiObj{
			"operationId": "getOpenAPIDocument",
			"tags":        []string{"Meta"},
			"summary":     "This document",
			"security":    []any{},
			"responses": apiObj{"200": apiObj{
				"description": "The OpenAPI 3.1 document of the admin API.",
				"content":     apiObj{"application/json": apiObj{"schema": apiObj{"type": "object"}}},
			}},
		}},
	}
	for _, rt := range routes {
		item, _ := paths[rt.path].(apiObj)
		if item == nil {
			item = apiObj{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = g.operation(rt)
	}
	return apiObj{
		"openapi": "3.1.0",
		"info": apiObj{
			"title":   "Locksmith admin API",
			"version": "1",
			"description": "The console's capabilities as JSON: the tenant's IdP registration, upstreams and tools. " +
				"Authenticate with a tenant API key (created in the console, or by `locksmith tenant create`) in " +
				"Authorization: Bearer lsk_…; the key decides the tenant. Viewer keys can only read. Request bodies " +
				"are decoded strictly: unknown fields and wrong types are refused with a problem naming the field. " +
				"PATCH changes only the fields present. Secrets are write-only: responses say client_secret_set.",
		},
		"servers":  []apiObj{{"url": strings.TrimRight(baseURL, "/")}},
		"security": []apiObj{{"apiKey": []string{}}},
		"tags": []apiObj{
			{"name": "IdP", "description": "The identity provider Token A is validated against (at most one per tenant)."},
			{"name": "Upstreams", "description": "APIs that tools call on behalf of users."},
			{"name": "Tools", "description": "Operations agents can call."},
			{"name": "Audit", "description": "Every call agents made, and its outcome."},
			{"name": "Approvals", "description": "Calls held for two-person approval."},
			{"name": "Presets", "description": "Facts about common providers to start from."},
			{"name": "Meta"},
		},
		"paths": paths,
		"components": apiObj{
			"securitySchemes": apiObj{"apiKey": apiObj{
				"type":         "http",
				"scheme":       "bearer",
				"bearerFormat": "lsk_<tenant id>_<secret>",
				"description":  "A tenant API key. Admin keys may change things; viewer keys may only read.",
			}},
			"schemas":   g.schemas,
			"responses": responses,
		},
	}
}

// apiObj is a JSON object under construction.
type apiObj = map[string]any

func apiSchemaRef(name string) apiObj { return apiObj{"$ref": "#/components/schemas/" + name} }

func apiProblemRef(status int) apiObj {
	return apiObj{"$ref": "#/components/responses/" + apiProblemResponses[status].name}
}

// operation documents one route.
func (g *apiSchemaGen) operation(rt apiRoute) apiObj {
	op := rt.op
	o := apiObj{"operationId": op.id, "tags": []string{op.tag}, "summary": op.summary}
	if op.doc != "" {
		o["description"] = op.doc
	}
	var params []apiObj
	if strings.Contains(rt.path, "{id}") {
		params = append(params, apiObj{"name": "id", "in": "path", "required": true, "schema": apiObj{"type": "string", "format": "uuid"}})
	}
	for _, p := range op.query {
		s := apiObj{"type": p.typ}
		if p.format != "" {
			s["format"] = p.format
		}
		params = append(params, apiObj{"name": p.name, "in": "query", "description": p.doc, "schema": s})
	}
	if params != nil {
		o["parameters"] = params
	}
	if op.body != nil {
		o["requestBody"] = apiObj{
			"required": true,
			"content":  apiObj{"application/json": apiObj{"schema": g.schema(reflect.TypeOf(op.body), true)}},
		}
	}
	status := op.status
	if status == 0 {
		status = http.StatusOK
	}
	res := apiObj{}
	success := apiObj{"description": http.StatusText(status)}
	if op.resp != nil {
		success["content"] = apiObj{"application/json": apiObj{"schema": g.schema(reflect.TypeOf(op.resp), false)}}
	}
	if status == http.StatusCreated && op.alt == nil {
		success["headers"] = apiObj{"Location": apiObj{"description": "The new object's URL.", "schema": apiObj{"type": "string"}}}
	}
	res[strconv.Itoa(status)] = success
	if a := op.alt; a != nil {
		res[strconv.Itoa(a.status)] = apiObj{
			"description": a.doc,
			"content":     apiObj{"application/json": apiObj{"schema": g.schema(reflect.TypeOf(a.resp), false)}},
		}
	}
	problems := []int{http.StatusUnauthorized, http.StatusInternalServerError}
	if op.body != nil || op.query != nil {
		problems = append(problems, http.StatusBadRequest)
	}
	if rt.method != http.MethodGet {
		problems = append(problems, http.StatusForbidden)
	}
	if strings.Contains(rt.path, "{id}") || op.body != nil {
		problems = append(problems, http.StatusNotFound)
	}
	if rt.method == http.MethodPost || rt.method == http.MethodPatch {
		problems = append(problems, http.StatusConflict)
	}
	if op.body != nil {
		problems = append(problems, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	for _, st := range problems {
		res[strconv.Itoa(st)] = apiProblemRef(st)
	}
	o["responses"] = res
	return o
}

// apiSchemaGen turns the API's Go types into JSON Schema (2020-12, as OpenAPI
// 3.1 uses). Named structs become components; the `doc` tag of a field is
// its description and a `type` tag overrides the type of a json.RawMessage
// ("object", or "object,string"). Input structs refuse additional
// properties (the decoder does); fields without omitempty are required in
// responses, and input fields tagged api:"required" in requests.
type apiSchemaGen struct {
	schemas map[string]any
}

var (
	apiTimeType    = reflect.TypeFor[time.Time]()
	apiUUIDType    = reflect.TypeFor[uuid.UUID]()
	apiRawJSONType = reflect.TypeFor[json.RawMessage]()
	apiOptElemType = reflect.TypeFor[interface{ optionalElem() reflect.Type }]()
)

func (g *apiSchemaGen) schema(t reflect.Type, input bool) apiObj {
	nullable := false
	for t.Kind() == reflect.Pointer {
		nullable = true
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(apiOptElemType) {
		nullable = true
		t = reflect.New(t).Interface().(interface{ optionalElem() reflect.Type }).optionalElem()
	}
	s := g.plain(t, input)
	if nullable {
		if typ, ok := s["type"].(string); ok {
			s["type"] = []string{typ, "null"}
		} else {
			s = apiObj{"anyOf": []apiObj{s, {"type": "null"}}}
		}
	}
	return s
}

func (g *apiSchemaGen) plain(t reflect.Type, input bool) apiObj {
	switch t {
	case apiTimeType:
		return apiObj{"type": "string", "format": "date-time"}
	case apiUUIDType:
		return apiObj{"type": "string", "format": "uuid"}
	case apiRawJSONType:
		return apiObj{}
	}
	switch t.Kind() {
	case reflect.String:
		return apiObj{"type": "string"}
	case reflect.Bool:
		return apiObj{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return apiObj{"type": "integer"}
	case reflect.Slice:
		return apiObj{"type": "array", "items": g.schema(t.Elem(), input)}
	case reflect.Map:
		return apiObj{"type": "object", "additionalProperties": g.schema(t.Elem(), input)}
	case reflect.Struct:
		name := strings.TrimPrefix(t.Name(), "api")
		if _, done := g.schemas[name]; !done {
			g.schemas[name] = nil // reserve: stops recursion
			g.schemas[name] = g.object(t, input)
		}
		return apiSchemaRef(name)
	}
	panic("web: no JSON schema for " + t.String())
}

func (g *apiSchemaGen) object(t reflect.Type, input bool) apiObj {
	props := apiObj{}
	var required []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		var s apiObj
		if override := f.Tag.Get("type"); override != "" {
			types := strings.Split(override, ",")
			if len(types) == 1 {
				s = apiObj{"type": types[0]}
			} else {
				s = apiObj{"type": types}
			}
		} else {
			s = g.schema(f.Type, input)
		}
		if d := f.Tag.Get("doc"); d != "" {
			if _, isRef := s["$ref"]; isRef {
				s = apiObj{"allOf": []apiObj{s}, "description": d}
			} else {
				s["description"] = d
			}
		}
		props[name] = s
		optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		if (!input && !optional) || f.Tag.Get("api") == "required" {
			required = append(required, name)
		}
	}
	o := apiObj{"type": "object", "properties": props}
	if required != nil {
		o["required"] = required
	}
	if input {
		o["additionalProperties"] = false
	}
	return o
}
