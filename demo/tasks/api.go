package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxTitleLength is the longest task title accepted, in characters.
const MaxTitleLength = 200

// Task is one to-do item, owned by the user whose token created it.
type Task struct {
	// ID is unique across users, e.g. "42".
	ID string `json:"id"`
	// Title is 1 to MaxTitleLength characters.
	Title string `json:"title"`
	// Done reports completion.
	Done bool `json:"done"`
	// CreatedAt is set by the server, in UTC.
	CreatedAt time.Time `json:"created_at"`
}

// TaskList is the body of GET /tasks.
type TaskList struct {
	// Tasks are the caller's tasks, oldest first.
	Tasks []Task `json:"tasks"`
}

// RecordedRequest is one resource API request (GET/POST /tasks,
// GET/PATCH/DELETE /tasks/{id}), recorded whether or not it was authorized,
// so tests can assert which user and which token a call ran with.
//
// Authorization holds the raw header, bearer token included: records live in
// memory only, for tests, and are never logged.
type RecordedRequest struct {
	// At is when the request finished.
	At time.Time
	// Method and Path are the request line (path without query).
	Method, Path string
	// Status is the response status.
	Status int
	// Authorization is the raw Authorization header, possibly empty.
	Authorization string
	// TokenHash is [TokenHash] of the presented bearer token, empty when
	// none was presented.
	TokenHash string
	// Subject is the user the token acts for; empty when the token was
	// missing or unknown.
	Subject string
	// ClientID and FamilyID identify the token's grant, when known.
	ClientID, FamilyID string
	// Scopes are the token's scopes, when known.
	Scopes []string
	// TokenError is why the token was refused with 401, e.g. "token
	// expired"; empty when it was accepted.
	TokenError string
}

// principal is the caller of a resource request.
type principal struct {
	subject   string
	clientID  string
	familyID  string
	scopes    []string
	tokenHash string
}

// statusRecorder captures the response status for RecordedRequest.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// resource wraps a resource API handler with bearer authentication, the scope
// check and recording.
func (s *Server) resource(scope string, h func(http.ResponseWriter, *http.Request, principal) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		authz := r.Header.Get("Authorization")
		p, tokErr, err := s.authenticate(r, authz)
		switch {
		case err != nil:
		case !slices.Contains(p.scopes, scope):
			err = &oauthError{
				status: http.StatusForbidden,
				code:   "insufficient_scope",
				desc:   "this operation needs scope " + scope,
				wwwAuthenticate: fmt.Sprintf(`Bearer realm="acme-tasks", error="insufficient_scope", scope=%q, resource_metadata=%q`,
					scope, s.issuerFor(r)+"/.well-known/oauth-protected-resource"),
			}
		default:
			err = h(rec, r, p)
		}
		if err != nil {
			s.writeError(rec, r, err)
		}
		s.mu.Lock()
		s.records = appendBounded(s.records, RecordedRequest{
			At:            s.clock(),
			Method:        r.Method,
			Path:          r.URL.Path,
			Status:        rec.status,
			Authorization: authz,
			TokenHash:     p.tokenHash,
			Subject:       p.subject,
			ClientID:      p.clientID,
			FamilyID:      p.familyID,
			Scopes:        p.scopes,
			TokenError:    tokErr,
		}, s.maxRecords)
		s.mu.Unlock()
	}
}

// authenticate resolves the bearer token of r. On failure it returns the
// partial principal (token hash only), the reason, and a 401 error.
func (s *Server) authenticate(r *http.Request, authz string) (principal, string, error) {
	var p principal
	reason := ""
	scheme, raw, _ := strings.Cut(authz, " ")
	raw = strings.TrimSpace(raw)
	switch {
	case authz == "":
		reason = "missing bearer token"
	case !strings.EqualFold(scheme, "Bearer") || raw == "":
		reason = "malformed authorization header"
	default:
		p.tokenHash = TokenHash(raw)
		s.mu.Lock()
		t, ok := s.tokens[p.tokenHash]
		switch {
		case !ok || t.kind != kindAccess:
			reason = "unknown token"
		default:
			if dead, why := t.dead(s.clock()); dead {
				reason = why
			}
			p.subject, p.clientID, p.familyID = t.family.subject, t.family.clientID, t.family.id
			p.scopes = slices.Clone(t.scopes)
		}
		s.mu.Unlock()
	}
	if reason == "" {
		return p, "", nil
	}
	return p, reason, &oauthError{
		status: http.StatusUnauthorized,
		code:   "invalid_token",
		desc:   reason,
		wwwAuthenticate: fmt.Sprintf(`Bearer realm="acme-tasks", error="invalid_token", error_description=%q, resource_metadata=%q`,
			reason, s.issuerFor(r)+"/.well-known/oauth-protected-resource"),
	}
}

// Requests returns the recorded resource requests, oldest first (bounded by
// Config.MaxRecords).
func (s *Server) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

// ResetRecords forgets recorded requests. Stats are kept.
func (s *Server) ResetRecords() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = nil
}

// TasksOf returns a copy of subject's tasks, oldest first; a Go-only test
// helper that bypasses authentication.
func (s *Server) TasksOf(subject string) []Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tasks[subject])
}

// SeedTask creates a task for subject without a token, as a Go-only test
// helper. Errors wrap [ErrNotFound] (unknown user) or [ErrCapacity].
func (s *Server) SeedTask(subject, title string) (Task, error) {
	if _, ok := s.userByName[subject]; !ok {
		return Task{}, fmt.Errorf("tasks: seed task: user %q: %w", subject, ErrNotFound)
	}
	if err := validateTitle(title); err != nil {
		return Task{}, fmt.Errorf("tasks: seed task: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.createTaskLocked(subject, title, false)
	if err != nil {
		return Task{}, fmt.Errorf("tasks: seed task: %w", err)
	}
	return t, nil
}

func validateTitle(title string) error {
	n := utf8.RuneCountInString(strings.TrimSpace(title))
	if n == 0 || n > MaxTitleLength || !utf8.ValidString(title) {
		return errInvalidRequest("title must be 1 to %d characters", MaxTitleLength)
	}
	return nil
}

func (s *Server) createTaskLocked(subject, title string, done bool) (Task, error) {
	if len(s.tasks[subject]) >= s.maxTasks {
		return Task{}, &oauthError{status: http.StatusConflict, code: "task_limit", desc: fmt.Sprintf("at most %d tasks per user", s.maxTasks)}
	}
	s.nextTaskID++
	t := Task{ID: strconv.Itoa(s.nextTaskID), Title: strings.TrimSpace(title), Done: done, CreatedAt: s.clock().UTC()}
	s.tasks[subject] = append(s.tasks[subject], t)
	return t, nil
}

// decodeJSON decodes a bounded JSON body, rejecting unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errInvalidRequest("malformed JSON body: %s", err.Error())
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errInvalidRequest("body must hold one JSON object")
	}
	return nil
}

func errTaskNotFound() error {
	return &oauthError{status: http.StatusNotFound, code: "not_found", desc: "task not found"}
}

func (s *Server) handleListTasks(w http.ResponseWriter, _ *http.Request, p principal) error {
	list := TaskList{Tasks: s.TasksOf(p.subject)}
	if list.Tasks == nil {
		list.Tasks = []Task{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

type newTask struct {
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

func (s *Server) handleCreateTask(w http.ResponseWriter, r *http.Request, p principal) error {
	var in newTask
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := validateTitle(in.Title); err != nil {
		return err
	}
	s.mu.Lock()
	t, err := s.createTaskLocked(p.subject, in.Title, in.Done)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/tasks/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) handleGetTask(w http.ResponseWriter, r *http.Request, p principal) error {
	s.mu.Lock()
	i := slices.IndexFunc(s.tasks[p.subject], func(t Task) bool { return t.ID == r.PathValue("id") })
	var t Task
	if i >= 0 {
		t = s.tasks[p.subject][i]
	}
	s.mu.Unlock()
	if i < 0 {
		return errTaskNotFound()
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

type taskUpdate struct {
	Title *string `json:"title"`
	Done  *bool   `json:"done"`
}

func (s *Server) handleUpdateTask(w http.ResponseWriter, r *http.Request, p principal) error {
	var in taskUpdate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Title != nil {
		if err := validateTitle(*in.Title); err != nil {
			return err
		}
	}
	s.mu.Lock()
	list := s.tasks[p.subject]
	i := slices.IndexFunc(list, func(t Task) bool { return t.ID == r.PathValue("id") })
	var t Task
	if i >= 0 {
		if in.Title != nil {
			list[i].Title = strings.TrimSpace(*in.Title)
		}
		if in.Done != nil {
			list[i].Done = *in.Done
		}
		t = list[i]
	}
	s.mu.Unlock()
	if i < 0 {
		return errTaskNotFound()
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *Server) handleDeleteTask(w http.ResponseWriter, r *http.Request, p principal) error {
	s.mu.Lock()
	list := s.tasks[p.subject]
	i := slices.IndexFunc(list, func(t Task) bool { return t.ID == r.PathValue("id") })
	if i >= 0 {
		s.tasks[p.subject] = slices.Delete(list, i, i+1)
	}
	s.mu.Unlock()
	if i < 0 {
		return errTaskNotFound()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
