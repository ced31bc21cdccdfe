// hello: the real node's test image. An HTTP server on :8080 that answers with its host name
// (so a Service's replies show which pod served them) and logs each request; with arguments it
// prints them and exits (something for `kubectl exec` to run in an image without a shell).
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Println("exec:", os.Args[1:])
		return
	}
	host, _ := os.Hostname()
	fmt.Println("listening on :8080")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("request", r.Method, r.URL.Path)
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
