// Command probe is a static program that the sandbox tests run inside the
// sandbox to try one system call or report what it sees.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: probe CASE")
		os.Exit(2)
	}
	fmt.Println("probe", os.Args[1])
}
