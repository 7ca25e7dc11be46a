module github.com/nodexsec/nodex/services/sandbox-runner

go 1.26.0
