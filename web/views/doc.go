// Package views holds the console's templ components and their view models.
// Each page takes one typed view model, built by a plain function in package
// web from domain data; templates never call services and hold no rules
// beyond presentation. Anything a test or the browser test selects carries a
// data-testid. Every page works without JavaScript.
//
// Generate with `go tool templ generate` from the module root; the generated
// *_templ.go files are committed.
package views
