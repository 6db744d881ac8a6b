package tasks

import (
	"encoding/json"
	"strings"
)

// OpenAPIDocument returns the OpenAPI 3.0 document of the resource API with
// baseURL (trailing slash ignored) as server and OAuth endpoints. Operations
// are listTasks, createTask, getTask, updateTask and deleteTask; each lists
// the one scope it needs under the "oauth2" authorizationCode scheme. The
// output is deterministic (keys sorted).
func OpenAPIDocument(baseURL string) []byte {
	base := strings.TrimRight(baseURL, "/")
	ref := func(kind, name string) obj { return obj{"$ref": "#/components/" + kind + "/" + name} }
	jsonBody := func(schema obj) obj { return obj{"application/json": obj{"schema": schema}} }
	security := func(scope string) []obj { return []obj{{"oauth2": []string{scope}}} }
	errs := func(codes ...string) obj {
		out := obj{
			"401": ref("responses", "Unauthorized"),
			"403": ref("responses", "Forbidden"),
		}
		for _, c := range codes {
			switch c {
			case "400":
				out[c] = ref("responses", "BadRequest")
			case "404":
				out[c] = ref("responses", "NotFound")
			}
		}
		return out
	}
	with := func(m obj, code string, resp obj) obj {
		m[code] = resp
		return m
	}

	doc := obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":       "Acme Tasks",
			"version":     "1.0.0",
			"description": "Per-user to-do items. Each user sees only their own tasks. Demo upstream API for Locksmith.",
		},
		"servers": []obj{{"url": base}},
		"paths": obj{
			"/tasks": obj{
				"get": obj{
					"operationId": "listTasks",
					"summary":     "List your tasks",
					"description": "Returns the caller's tasks, oldest first.",
					"security":    security(ScopeRead),
					"responses": with(errs(), "200", obj{
						"description": "The caller's tasks.",
						"content":     jsonBody(ref("schemas", "TaskList")),
					}),
				},
				"post": obj{
					"operationId": "createTask",
					"summary":     "Create a task",
					"security":    security(ScopeWrite),
					"requestBody": obj{"required": true, "content": jsonBody(ref("schemas", "NewTask"))},
					"responses": with(errs("400"), "201", obj{
						"description": "The created task.",
						"headers":     obj{"Location": obj{"schema": obj{"type": "string"}, "description": "Path of the new task."}},
						"content":     jsonBody(ref("schemas", "Task")),
					}),
				},
			},
			"/tasks/{id}": obj{
				"parameters": []obj{ref("parameters", "TaskID")},
				"get": obj{
					"operationId": "getTask",
					"summary":     "Get one of your tasks",
					"security":    security(ScopeRead),
					"responses": with(errs("404"), "200", obj{
						"description": "The task.",
						"content":     jsonBody(ref("schemas", "Task")),
					}),
				},
				"patch": obj{
					"operationId": "updateTask",
					"summary":     "Update the title or done flag of one of your tasks",
					"security":    security(ScopeWrite),
					"requestBody": obj{"required": true, "content": jsonBody(ref("schemas", "TaskUpdate"))},
					"responses": with(errs("400", "404"), "200", obj{
						"description": "The updated task.",
						"content":     jsonBody(ref("schemas", "Task")),
					}),
				},
				"delete": obj{
					"operationId": "deleteTask",
					"summary":     "Delete one of your tasks",
					"security":    security(ScopeDelete),
					"responses":   with(errs("404"), "204", obj{"description": "Deleted."}),
				},
			},
		},
		"components": obj{
			"securitySchemes": obj{
				"oauth2": obj{
					"type":        "oauth2",
					"description": "Authorization code with PKCE (S256). Refresh tokens rotate; reuse revokes the grant.",
					"flows": obj{
						"authorizationCode": obj{
							"authorizationUrl": base + "/authorize",
							"tokenUrl":         base + "/token",
							"refreshUrl":       base + "/token",
							"scopes": obj{
								ScopeRead:   "Read your tasks",
								ScopeWrite:  "Create and update your tasks",
								ScopeDelete: "Delete your tasks",
							},
						},
					},
				},
			},
			"parameters": obj{
				"TaskID": obj{
					"name": "id", "in": "path", "required": true,
					"description": "Task id.",
					"schema":      obj{"type": "string"},
				},
			},
			"schemas": obj{
				"Task": obj{
					"type":     "object",
					"required": []string{"id", "title", "done", "created_at"},
					"properties": obj{
						"id":         obj{"type": "string", "readOnly": true},
						"title":      obj{"type": "string", "minLength": 1, "maxLength": MaxTitleLength},
						"done":       obj{"type": "boolean"},
						"created_at": obj{"type": "string", "format": "date-time", "readOnly": true},
					},
				},
				"TaskList": obj{
					"type":       "object",
					"required":   []string{"tasks"},
					"properties": obj{"tasks": obj{"type": "array", "items": ref("schemas", "Task")}},
				},
				"NewTask": obj{
					"type":                 "object",
					"required":             []string{"title"},
					"additionalProperties": false,
					"properties": obj{
						"title": obj{"type": "string", "minLength": 1, "maxLength": MaxTitleLength},
						"done":  obj{"type": "boolean", "default": false},
					},
				},
				"TaskUpdate": obj{
					"type":                 "object",
					"additionalProperties": false,
					"properties": obj{
						"title": obj{"type": "string", "minLength": 1, "maxLength": MaxTitleLength},
						"done":  obj{"type": "boolean"},
					},
				},
				"Error": obj{
					"type":     "object",
					"required": []string{"error"},
					"properties": obj{
						"error":             obj{"type": "string"},
						"error_description": obj{"type": "string"},
					},
				},
			},
			"responses": obj{
				"BadRequest":   errResponse("The request body is invalid."),
				"Unauthorized": errResponse("The bearer token is missing, unknown, expired or revoked (WWW-Authenticate: Bearer error=\"invalid_token\")."),
				"Forbidden":    errResponse("The token lacks the scope this operation needs (error=\"insufficient_scope\")."),
				"NotFound":     errResponse("No such task for the caller."),
			},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("tasks: marshal openapi document: " + err.Error()) // static document; cannot fail
	}
	return b
}

type obj = map[string]any

func errResponse(desc string) obj {
	return obj{
		"description": desc,
		"content":     obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/Error"}}},
	}
}
