module github.com/nodexsec/nodex/services/incident

go 1.26.0
