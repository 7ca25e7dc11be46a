module github.com/nodexsec/nodex/tests

go 1.26.0
