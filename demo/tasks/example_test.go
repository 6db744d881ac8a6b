package tasks_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/locksmithhq/locksmith/demo/tasks"
)

// Example starts Acme Tasks on a free loopback port, issues tokens for the
// "engineer" demo user without clicking through consent, and calls the API.
func Example() {
	srv, err := tasks.New(tasks.Config{})
	if err != nil {
		panic(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer srv.Close(context.Background())

	tok, err := srv.IssueTokens("engineer", tasks.DefaultClientID, []string{tasks.ScopeRead})
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/tasks", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Print(string(body))
	fmt.Println(srv.Requests()[0].Subject)
	// Output:
	// 200 OK
	// {"tasks":[]}
	// engineer
}
