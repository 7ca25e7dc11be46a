module github.com/nodexsec/nodex/services/monitor

go 1.26.0
