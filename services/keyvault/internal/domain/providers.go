package domain

// openAIMarker sits in the middle of current OpenAI keys: it is the base64
// encoding of "OpenAI".
const openAIMarker = "T3BlbkFJ"

// Providers lists the key formats the vault accepts, one entry per
// provider. The shapes (prefix, length, character set) were read from the
// rules of the gitleaks, betterleaks and trufflehog secret scanners in
// 2026 and are restated here as data, so a new format is a data change.
// Providers change formats over time (OpenAI moved from 51-character "sk-"
// keys to 132 and 164 characters), so a rejection of a genuine new key
// means this table needs a row.
var Providers = []Provider{
	{ID: "openai", Formats: []Format{
		openAI("project key", "sk-proj-", URLSafe, 74),
		openAI("project key (short)", "sk-proj-", URLSafe, 58),
		openAI("service account key", "sk-svcacct-", URLSafe, 74),
		openAI("service account key (short)", "sk-svcacct-", URLSafe, 58),
		openAI("admin key", "sk-admin-", URLSafe, 58),
		openAI("legacy user key", "sk-", Alnum, 20),
	}},
	{ID: "anthropic", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("sk-ant-api03-"), Run(URLSafe, 93), Lit("AA")}},
		{Kind: "admin key", Segments: []Segment{Lit("sk-ant-admin01-"), Run(URLSafe, 93), Lit("AA")}},
	}},
	{ID: "google", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("AIza"), Run(URLSafe, 35)}},
	}},
	{ID: "mistral", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Run(Alnum, 32)}},
	}},
	{ID: "cohere", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Run(Alnum, 40)}},
	}},
	{ID: "groq", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("gsk_"), Run(Alnum, 52)}},
	}},
	{ID: "huggingface", Formats: []Format{
		{Kind: "user access token", Segments: []Segment{Lit("hf_"), Run(Alnum, 34)}},
		{Kind: "organization token", Segments: []Segment{Lit("api_org_"), Run(Alnum, 34)}},
	}},
	{ID: "aws", Formats: awsFormats()},
	{ID: "xai", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("xai-"), Span(URLSafe, 70, 120)}},
	}},
	{ID: "deepseek", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("sk-"), Run(LowerAlnum, 32)}},
	}},
	{ID: "openrouter", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("sk-or-v1-"), Run(LowerHex, 64)}},
	}},
	{ID: "perplexity", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("pplx-"), Run(Alnum, 48)}},
	}},
	{ID: "replicate", Formats: []Format{
		{Kind: "API token", Segments: []Segment{Lit("r8_"), Run(URLSafe, 37)}},
	}},
	{ID: "together", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("tgp_v1_"), Run(URLSafe, 43)}},
	}},
	{ID: "cerebras", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("csk-"), Run(Alnum, 48)}},
	}},
	{ID: "elevenlabs", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Lit("sk_"), Run(LowerHex, 48)}},
	}},
	{ID: "azure_openai", Formats: []Format{
		{Kind: "API key", Segments: []Segment{Run(LowerHex, 32)}},
	}},
}

func openAI(kind, prefix, charset string, half int) Format {
	return Format{Kind: kind, Segments: []Segment{
		Lit(prefix), Run(charset, half), Lit(openAIMarker), Run(charset, half),
	}}
}

// awsFormats covers the long-term and temporary access key ids, the
// 40-character secret access key and the long-lived Bedrock API key.
func awsFormats() []Format {
	formats := make([]Format, 0, 6)
	for _, prefix := range []string{"AKIA", "ASIA", "ABIA", "ACCA"} {
		formats = append(formats, Format{
			Kind:     prefix + " access key id",
			Segments: []Segment{Lit(prefix), Run(Base32Upper, 16)},
		})
	}
	formats = append(formats,
		Format{Kind: "secret access key", Segments: []Segment{Run(Base64Std, 40)}},
		Format{Kind: "Bedrock API key", Segments: []Segment{
			Lit("ABSK"), Span(Base64Std, 109, 269), Span("=", 0, 2),
		}},
	)

	return formats
}
