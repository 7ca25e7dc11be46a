package domain

import "fmt"

// Severity scoring. The score runs from 0 to 100 and is the sum of:
//
//   - a base per type: SYSTEM_COMPROMISE 70, DATA_BREACH 60, CODE_INJECTION 50,
//     UNAUTHORIZED_ACCESS 40, API_ABUSE 30;
//   - evidence: 5 points per distinct evidence event after the first, at most 20;
//   - repetition: 5 points when the joined threats count 10 or more
//     occurrences, 10 points at 100 or more;
//   - identity kind: service 20, operator 15, unknown (not in the registry) 10,
//     agent 0, because a compromised service or operator reaches more;
//   - resource labels: 15 for any resource labelled sensitivity=high or
//     critical=true, else 5 for sensitivity=medium;
//   - repeat offence: 10 when the identity had an earlier incident.
//
// The result is never below the floor of the highest severity monitor gave a
// joined threat (critical 90, high 70, medium 40, low 20), so incident never
// ranks an attack lower than detection did. Bands: 90 and above critical, 70
// high, 40 medium, 20 low, below 20 info.
var typeBase = map[Type]int{
	SystemCompromise:   70,
	DataBreach:         60,
	CodeInjection:      50,
	UnauthorizedAccess: 40,
	APIAbuse:           30,
}

var kindPoints = map[Kind]int{
	KindService:  20,
	KindOperator: 15,
	KindUnknown:  10,
	KindAgent:    0,
}

var severityFloor = map[Severity]int{
	SeverityCritical: 90,
	SeverityHigh:     70,
	SeverityMedium:   40,
	SeverityLow:      20,
	SeverityInfo:     0,
}

// Assess scores the incident, sets Score, Severity and ScoreFactors, and
// returns the severity. The factors list each term so a report can show why.
func (inc *Incident) Assess() Severity {
	score := typeBase[inc.Type]
	factors := []string{fmt.Sprintf("type %s: %d", inc.Type, score)}
	add := func(points int, why string) {
		if points > 0 {
			score += points
			factors = append(factors, fmt.Sprintf("%s: +%d", why, points))
		}
	}
	add(min(5*max(len(inc.Evidence)-1, 0), 20), fmt.Sprintf("%d evidence events",
		len(inc.Evidence)))
	switch n := inc.ThreatCount(); {
	case n >= 100:
		add(10, fmt.Sprintf("%d occurrences", n))
	case n >= 10:
		add(5, fmt.Sprintf("%d occurrences", n))
	}
	kind := inc.Identity.Kind
	if !inc.Identity.Known {
		kind = KindUnknown
	}
	add(kindPoints[kind], "identity kind "+string(kind))
	add(labelPoints(inc.Resources), "sensitive resource labels")
	if inc.Offense > 1 {
		add(10, fmt.Sprintf("repeat offence %d", inc.Offense))
	}
	if floor := severityFloor[inc.MaxThreatSeverity()]; score < floor {
		factors = append(factors, fmt.Sprintf("raised to the %s floor: %d",
			inc.MaxThreatSeverity(), floor))
		score = floor
	}
	score = min(score, 100)
	inc.Score, inc.ScoreFactors, inc.Severity = score, factors, band(score)

	return inc.Severity
}

func labelPoints(resources []Resource) int {
	points := 0
	for _, r := range resources {
		switch {
		case r.Labels["sensitivity"] == "high" || r.Labels["critical"] == "true":
			return 15
		case r.Labels["sensitivity"] == "medium":
			points = 5
		}
	}

	return points
}

func band(score int) Severity {
	switch {
	case score >= 90:
		return SeverityCritical
	case score >= 70:
		return SeverityHigh
	case score >= 40:
		return SeverityMedium
	case score >= 20:
		return SeverityLow
	default:
		return SeverityInfo
	}
}
