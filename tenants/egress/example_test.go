package egress_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/locksmithhq/locksmith/tenants/egress"
)

// CheckURL gives an admin a plain answer for a URL typed into a form.
func ExampleClient_CheckURL() {
	c, err := egress.New(egress.Options{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, raw := range []string{
		"https://8.8.8.8/.well-known/openid-configuration",
		"https://0x7f.1/",
		"https://[::ffff:169.254.169.254]/latest/meta-data/",
		"https://10.1/",
		"http://8.8.8.8/",
		"https://admin:hunter2@8.8.8.8/",
	} {
		if err := c.CheckURL(ctx, raw); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println("ok")
	}
	// Output:
	// ok
	// that address is loopback and not allowed (0x7f.1 is 127.0.0.1)
	// that address is the cloud metadata address and not allowed (::ffff:169.254.169.254)
	// that address is private and not allowed (10.1 is 10.0.0.1)
	// the URL must use https
	// the URL must not contain a user name or password
}

// Refusals made while a request runs come back inside *url.Error; errors.As
// recovers the admin-facing message.
func ExampleClient_HTTPClient() {
	c, err := egress.New(egress.Options{})
	if err != nil {
		panic(err)
	}
	_, err = c.HTTPClient().Get("https://127.0.0.1:8443/jwks.json")

	var e *egress.Error
	if errors.As(err, &e) && errors.Is(err, egress.ErrForbiddenTarget) {
		fmt.Println(e.Error())
	}
	// Output:
	// that address is loopback and not allowed (127.0.0.1)
}

// Breakers guards the calls to each key (for Locksmith, a tenant's
// upstream): every admitted call ends with a verdict, usually Judge of its
// response; after Threshold failures in a row the key's calls are refused,
// without being sent, until the cool-down is over. Other keys go on.
func ExampleBreakers() {
	b, err := egress.NewBreakers[string](egress.BreakerOptions{Threshold: 2, CoolDown: time.Minute})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for range 2 {
		p, err := b.Acquire(ctx, "tenant-a/tasks")
		if err != nil {
			panic(err)
		}
		// resp, err := client.Do(req) …
		p.Done(egress.Judge(&http.Response{StatusCode: http.StatusServiceUnavailable}, nil))
	}
	_, err = b.Acquire(ctx, "tenant-a/tasks")
	var ue *egress.UnavailableError
	fmt.Println(errors.Is(err, egress.ErrCircuitOpen), errors.As(err, &ue) && ue.OpenFor == time.Minute)
	p, err := b.Acquire(ctx, "tenant-b/tasks")
	fmt.Println(err)
	p.Done(egress.Healthy())
	// Output:
	// true true
	// <nil>
}
