// Package registrytest holds what the registry packages' tests share: a
// realistic federated catalog for benchmarks (the 100,000-dataset catalog
// of docs/benchmarks.md, with the query mix timed over it), shared by the
// search, catalog and propagation benchmarks and the node's open-data
// benchmark so that all of them measure the same data; an in-memory badger;
// and test identities that sign records.
//
// It imports nii, registry/search and badger, never registry or
// registry/gossip, so the tests of those can use it (search's own
// benchmarks are in package search_test for that reason).
package registrytest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nii-uk/nii"
)

// Dataset is one generated catalog entry: the publisher's advert and
// whether its org claim is taken as verified.
type Dataset struct {
	Advert   *nii.Advert
	Verified bool
}

var srchBoroughs = []string{
	"barking-and-dagenham", "barnet", "bexley", "brent", "bromley", "camden", "croydon", "ealing",
	"enfield", "greenwich", "hackney", "hammersmith-and-fulham", "haringey", "harrow", "havering",
	"hillingdon", "hounslow", "islington", "kensington-and-chelsea", "kingston-upon-thames", "lambeth",
	"lewisham", "merton", "newham", "redbridge", "richmond-upon-thames", "southwark", "sutton",
	"tower-hamlets", "waltham-forest", "wandsworth", "westminster", "city-of-london",
}

var srchThemes = []string{
	"finance", "environment", "transport", "housing", "planning", "health", "education",
	"social-care", "community-safety", "waste", "economy", "culture", "democracy", "population",
}

// srchKind is a kind of dataset councils publish: title, themes (indexes
// into srchThemes), typical keywords and columns.
type srchKind struct {
	title    string
	themes   []int
	keywords []string
	columns  []string
}

var srchKinds = []srchKind{
	{"Spend over £500", []int{0}, []string{"spend", "transparency", "payments", "suppliers"}, []string{"transaction_date", "supplier_name", "amount", "expense_type", "service_area", "transaction_number", "vat_registration", "cost_centre"}},
	{"Air quality sensor readings", []int{1, 5}, []string{"air quality", "no2", "pm2.5", "sensors"}, []string{"site_id", "timestamp", "no2_ugm3", "pm10", "pm25", "latitude", "longitude"}},
	{"Planning applications", []int{4}, []string{"planning", "applications", "development"}, []string{"application_ref", "received_date", "decision", "decision_date", "address", "ward", "uprn", "proposal"}},
	{"Business rates", []int{0, 10}, []string{"business rates", "nndr", "reliefs"}, []string{"account_ref", "rateable_value", "property_address", "postcode", "relief_type", "liability_start"}},
	{"Street trees", []int{1}, []string{"trees", "green infrastructure", "urban forest"}, []string{"tree_id", "species", "height_m", "latitude", "longitude", "ward", "condition"}},
	{"Parking fines", []int{2, 0}, []string{"parking", "pcn", "enforcement"}, []string{"pcn_number", "issue_date", "contravention_code", "street", "amount", "status"}},
	{"Council tax bands", []int{0, 3}, []string{"council tax", "valuation", "bands"}, []string{"uprn", "address", "postcode", "band", "ward"}},
	{"Fly-tipping incidents", []int{9, 8}, []string{"fly-tipping", "waste", "enforcement"}, []string{"incident_id", "reported_date", "waste_type", "ward", "latitude", "longitude", "size"}},
	{"Recycling rates", []int{9, 1}, []string{"recycling", "waste", "household waste"}, []string{"month", "tonnage_collected", "tonnage_recycled", "rate", "ward"}},
	{"Road traffic collisions", []int{2, 8}, []string{"road safety", "collisions", "stats19"}, []string{"accident_index", "date", "severity", "vehicles", "casualties", "latitude", "longitude"}},
	{"Electric vehicle charge points", []int{2, 1}, []string{"ev", "charging", "low emission"}, []string{"charger_id", "street", "connector_type", "power_kw", "operator", "latitude", "longitude"}},
	{"Housing waiting list", []int{3, 7}, []string{"housing", "waiting list", "allocations"}, []string{"band", "bedrooms_needed", "applications", "month", "priority"}},
	{"Temporary accommodation placements", []int{3, 7}, []string{"homelessness", "temporary accommodation"}, []string{"month", "households", "children", "placement_type", "borough"}},
	{"Council housing stock", []int{3}, []string{"housing stock", "social housing"}, []string{"uprn", "address", "property_type", "bedrooms", "epc_rating", "tenure"}},
	{"School admissions", []int{6}, []string{"schools", "admissions", "places"}, []string{"school_urn", "school_name", "places_offered", "applications", "year_group"}},
	{"Library visits", []int{11, 6}, []string{"libraries", "visits", "loans"}, []string{"library", "month", "visits", "loans", "pc_sessions"}},
	{"Public toilets", []int{5, 2}, []string{"toilets", "amenities", "accessibility"}, []string{"name", "address", "opening_hours", "accessible", "baby_change", "latitude", "longitude"}},
	{"Allotment sites", []int{1, 11}, []string{"allotments", "green space"}, []string{"site_name", "plots", "vacant_plots", "waiting_list", "postcode"}},
	{"Parks and open spaces", []int{1, 11}, []string{"parks", "open space", "green space"}, []string{"park_name", "area_ha", "facilities", "ward", "latitude", "longitude"}},
	{"Noise complaints", []int{8, 1}, []string{"noise", "complaints", "nuisance"}, []string{"complaint_id", "received_date", "noise_type", "ward", "outcome"}},
	{"Food hygiene inspections", []int{5, 10}, []string{"food hygiene", "inspections", "fhrs"}, []string{"business_name", "address", "rating", "inspection_date", "postcode"}},
	{"Licensed premises", []int{10, 8}, []string{"licensing", "alcohol", "premises"}, []string{"licence_number", "premises_name", "address", "licence_type", "hours"}},
	{"Senior salaries", []int{0, 12}, []string{"salaries", "transparency", "senior staff"}, []string{"post_title", "salary_band", "directorate", "reports_to", "fte"}},
	{"Contracts register", []int{0, 12}, []string{"contracts", "procurement", "transparency"}, []string{"contract_ref", "supplier_name", "value", "start_date", "end_date", "department"}},
	{"Grants to voluntary organisations", []int{0, 11}, []string{"grants", "voluntary sector", "transparency"}, []string{"recipient", "charity_number", "amount", "award_date", "purpose"}},
	{"Councillor allowances", []int{12, 0}, []string{"councillors", "allowances", "members"}, []string{"councillor", "ward", "basic_allowance", "special_responsibility", "expenses"}},
	{"Election results", []int{12}, []string{"elections", "results", "turnout"}, []string{"ward", "candidate", "party", "votes", "elected", "turnout"}},
	{"Ward population estimates", []int{13}, []string{"population", "demographics", "census"}, []string{"ward_code", "ward_name", "population", "age_band", "sex"}},
	{"Births and deaths", []int{13, 5}, []string{"births", "deaths", "registrations"}, []string{"month", "births", "deaths", "registration_district"}},
	{"Adult social care packages", []int{7, 5}, []string{"social care", "care packages", "adults"}, []string{"month", "service_type", "clients", "weekly_cost", "provider"}},
	{"Children in care", []int{7, 6}, []string{"looked after children", "children's services"}, []string{"quarter", "children_looked_after", "placement_type", "age_band"}},
	{"Street lighting", []int{2, 8}, []string{"street lighting", "highways", "led"}, []string{"column_id", "street", "lamp_type", "wattage", "latitude", "longitude"}},
	{"Potholes reported", []int{2}, []string{"highways", "potholes", "road maintenance"}, []string{"report_id", "street", "reported_date", "repaired_date", "priority"}},
	{"Bus stop locations", []int{2}, []string{"buses", "public transport", "naptan"}, []string{"atco_code", "stop_name", "street", "latitude", "longitude", "shelter"}},
	{"Cycle counts", []int{2, 5}, []string{"cycling", "active travel", "counts"}, []string{"counter_id", "date", "hour", "cyclists", "direction"}},
	{"Energy use in council buildings", []int{1, 0}, []string{"energy", "carbon", "net zero"}, []string{"building", "month", "electricity_kwh", "gas_kwh", "co2_tonnes"}},
	{"Freedom of information requests", []int{12}, []string{"foi", "requests", "transparency"}, []string{"request_id", "received_date", "department", "outcome", "days_to_respond"}},
	{"Empty homes", []int{3, 0}, []string{"empty homes", "council tax", "housing"}, []string{"uprn", "empty_since", "premium", "ward"}},
	{"Houses in multiple occupation licences", []int{3, 8}, []string{"hmo", "licensing", "private rented"}, []string{"licence_number", "address", "occupants", "expiry_date", "ward"}},
	{"Markets and street trading pitches", []int{10, 11}, []string{"markets", "street trading"}, []string{"market", "pitch", "trader_type", "days", "fee"}},
	{"Land and property assets", []int{0, 4}, []string{"assets", "land", "property"}, []string{"uprn", "asset_name", "tenure", "use", "area_m2", "valuation"}},
}

// srchWords is description vocabulary; a few rare words and reference
// numbers are mixed in so the dictionary grows as it would.
var srchWords = strings.Fields(`council borough data dataset published monthly quarterly annually records
includes each row one entry where available figures shown pounds excluding vat information services residents
local authority london collected system updated regularly open reported below above total number list details
location ward postcode address date period financial year previous current changes corrections withdrawn
redacted personal removed protection act guidance government transparency code requirement publish
category type status outcome result value amount cost payment supplier contract department directorate team
service area capital revenue budget spending forecast actual variance statistics survey measured sensor
network monitoring hourly daily average maximum minimum threshold target performance indicator kpi
household property building street road junction site premises business organisation charity community
resident tenant landlord applicant customer visitor user member officer staff employee councillor`)

var srchRare = []string{"defibrillator", "bikehangar", "lido", "cemetery", "crematorium", "graffiti", "asbestos", "japanese knotweed"}

var srchLicences = []string{"OGL-UK-3.0", "OGL-UK-3.0", "OGL-UK-3.0", "CC-BY-4.0", "ODbL-1.0", ""}

var srchMedia = []string{"text/csv", "text/csv", "text/csv", "text/csv", "text/csv", "text/csv", "application/json", "application/json",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/geo+json"}

var srchExtraColumns = []string{"id", "notes", "last_updated", "source", "easting", "northing", "lsoa_code", "msoa_code", "ward_code", "category", "status", "reference", "description", "quantity", "unit", "financial_year"}

// Corpus returns n datasets as London's 33 boroughs publish them:
// realistic titles, descriptions, keywords, themes, licences, media types
// and 3–20 columns each, one origin per borough ("12D3KooW" + borough;
// not a real key: sign with your own). It is deterministic: the same n
// gives the same datasets, so benchmark figures stay comparable.
func Corpus(n int) []Dataset {
	rng := rand.New(rand.NewPCG(2024, 500))
	base := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	docs := make([]Dataset, n)
	quarters := []string{"", "", "Q1", "Q2", "Q3", "Q4", "January", "April", "July", "October"}
	for i := range docs {
		pub := srchBoroughs[rng.IntN(len(srchBoroughs))]
		k := srchKinds[rng.IntN(len(srchKinds))]
		year := 2015 + rng.IntN(11)
		q := quarters[rng.IntN(len(quarters))]
		title := fmt.Sprintf("%s %d", k.title, year)
		if q != "" {
			title = fmt.Sprintf("%s %s %d", k.title, q, year)
		}
		name := fmt.Sprintf("%s-%d-%d", strings.ToLower(strings.NewReplacer(" ", "-", "£", "").Replace(k.title)), year, i)

		words := make([]string, 0, 24)
		words = append(words, k.title)
		for range 14 + rng.IntN(12) {
			words = append(words, srchWords[rng.IntN(len(srchWords))])
		}
		if rng.IntN(50) == 0 {
			words = append(words, srchRare[rng.IntN(len(srchRare))])
		}
		if rng.IntN(5) == 0 {
			words = append(words, fmt.Sprintf("ref %s%d", string(rune('a'+rng.IntN(26))), rng.IntN(100000)))
		}

		var kws []string
		for range 1 + rng.IntN(5) {
			w := k.keywords[rng.IntN(len(k.keywords))]
			if rng.IntN(4) == 0 {
				w = srchKinds[rng.IntN(len(srchKinds))].keywords[0]
			}
			if !slices.Contains(kws, w) {
				kws = append(kws, w)
			}
		}
		ths := []string{srchThemes[k.themes[0]]}
		if len(k.themes) > 1 && rng.IntN(2) == 0 {
			ths = append(ths, srchThemes[k.themes[1]])
		}

		ncols := 3 + rng.IntN(18) // 3–20
		var cols []nii.Column
		for _, c := range k.columns {
			cols = append(cols, nii.Column{Name: c, Type: "string"})
		}
		for len(cols) < ncols {
			cols = append(cols, nii.Column{Name: srchExtraColumns[rng.IntN(len(srchExtraColumns))], Type: "string"})
		}
		cols = cols[:ncols]

		acc := nii.AccessOpen
		if rng.IntN(10) == 0 {
			acc = nii.AccessRestricted
		}
		conf := ""
		if k.title == "Spend over £500" && rng.IntN(2) == 0 {
			conf = "https://schemas.opendata.example/spend-over-500"
		}
		a := &nii.Advert{
			Origin:  nii.NodeID("12D3KooW" + pub),
			Seq:     uint64(i + 1),
			Dataset: nii.DatasetID{Org: pub, Name: name},
			Version: 1 + uint64(rng.IntN(20)),
			Meta: nii.Metadata{
				Title:         title,
				Description:   strings.Join(words, " "),
				Publisher:     pub,
				PublisherName: "London Borough of " + pub,
				Licence:       srchLicences[rng.IntN(len(srchLicences))],
				Keywords:      kws,
				Themes:        ths,
				Access:        acc,
				MediaType:     srchMedia[rng.IntN(len(srchMedia))],
				ByteSize:      rng.Int64N(50 << 20),
				Modified:      base.Add(time.Duration(rng.Int64N(int64(10 * 365 * 24 * time.Hour)))),
				ConformsTo:    conf,
				Table:         &nii.Table{Columns: cols},
			},
		}
		docs[i] = Dataset{Advert: a, Verified: rng.IntN(5) != 0}
	}
	return docs
}
