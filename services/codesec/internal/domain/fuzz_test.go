package domain_test

import (
	"encoding/json"
	"testing"

	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/services/codesec/internal/corpus"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
)

// FuzzSubmission feeds arbitrary bodies to the submission parser. Seeds are
// the files in testdata/fuzz/FuzzSubmission plus the hostile command and
// path lists of the corpus, placed in file names, contents, modules,
// arguments and stdin. Whatever the parser accepts must be valid and
// sealable: safe file names that encode into a bundle archive.
func FuzzSubmission(f *testing.F) {
	dir, err := corpus.Dir()
	if err != nil {
		f.Fatalf("the corpus provides seeds for this fuzz test: %v", err)
	}
	payloads, err := corpus.CommandPayloads(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range payloads {
		for _, s := range hostileSubmissions(p) {
			body, err := json.Marshal(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body)
		}
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := domain.ParseSubmission(body)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted submission fails validation: %v", err)
		}
		files := make([]bundle.File, 0, len(s.Files))
		for _, file := range s.Files {
			files = append(files, bundle.File{Name: file.Name, Data: []byte(file.Content)})
		}
		if _, err := bundle.EncodeFiles(files); err != nil {
			t.Fatalf("accepted submission cannot be archived: %v", err)
		}
	})
}

func hostileSubmissions(payload string) []domain.Submission {
	base := func() domain.Submission {
		return domain.Submission{Language: domain.LangSh, Entrypoint: "main.sh",
			Files: []domain.SourceFile{{Name: "main.sh", Content: "echo hi\n"}}}
	}
	asName, asContent, asModule, asArg := base(), base(), base(), base()
	asName.Files[0].Name, asName.Entrypoint = payload, payload
	asContent.Files[0].Content = payload
	asModule.Modules = []string{payload}
	asArg.Args, asArg.Stdin = []string{payload}, payload

	return []domain.Submission{asName, asContent, asModule, asArg}
}
