// Package spendgen writes synthetic "spend over £500" files in layouts as
// varied as real councils' (the DCLG header with a BOM and CRLF, Leeds's,
// Manchester's re-encoded BOM, a report with a preamble, Windows-1252 with
// £ signs, two-digit years and bracketed negatives, Excel serial dates with
// trailing minus signs and a totals footer), each with the mapping that maps
// it to the LGA standard. Benchmarks use it to build a 33-borough merge; the
// files and mappings it writes can be read by any other tool for comparison.
package spendgen

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File is one generated source.
type File struct {
	Org         string // the publisher, e.g. "barnet"
	Layout      string
	CSV         string // path of the CSV file
	Mapping     string // path of its mapping (TOML)
	Rows        int    // data rows
	TotalPence  int64  // sum of the amounts, in pence
	AmountCol   string // the header of the amount column
	FirstRecord int    // 1-based record number of the first data row
}

// Boroughs are the 33 London local authorities, as org slugs.
var Boroughs = []string{
	"barking-dagenham", "barnet", "bexley", "brent", "bromley", "camden", "city-of-london", "croydon",
	"ealing", "enfield", "greenwich", "hackney", "hammersmith-fulham", "haringey", "harrow", "havering",
	"hillingdon", "hounslow", "islington", "kensington-chelsea", "kingston", "lambeth", "lewisham", "merton",
	"newham", "redbridge", "richmond", "southwark", "sutton", "tower-hamlets", "waltham-forest", "wandsworth",
	"westminster",
}

// Layouts are the layout names, used in turn.
var Layouts = []string{"dclg", "leeds", "manchester", "report", "cp1252", "excel"}

// Write generates sources files of rows rows each into dir (created if
// needed), with their mappings, deterministically from seed.
func Write(dir string, sources, rows int, seed uint64) ([]File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []File
	for i := range sources {
		org := Boroughs[i%len(Boroughs)]
		if i >= len(Boroughs) {
			org = fmt.Sprintf("%s-%d", org, i/len(Boroughs))
		}
		f := File{Org: org, Layout: Layouts[i%len(Layouts)], Rows: rows,
			CSV: filepath.Join(dir, org+".csv"), Mapping: filepath.Join(dir, org+".map.toml")}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		if err := writeCSV(&f, rng); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f.Mapping, []byte(mappingFor(&f)), 0o644); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

var (
	supplierStems = []string{"Acme", "Biffa Waste Services", "Comensura", "Capita Business Services", "Veolia Environmental",
		"Kier Highways", "Serco", "Mears", "Wates Construction", "Amey Community", "Liberata", "Royal Mail Group",
		"British Gas Business", "EDF Energy Customers", "Thames Water Utilities", "Softcat", "Computacenter UK",
		"Bouygues Energies", "Ringway Jacobs", "Morgan Sindall", "Caterlink", "Pellings", "Town Hall Taxis", "Care UK"}
	supplierTails = []string{"Ltd", "Limited", "PLC", "LTD.", "", "Plc", "(UK) Ltd", "Services Ltd"}
	services      = []string{"Adult Social Care", "Children's Services", "Environment & Housing", "Resources", "Public Health",
		"Highways", "Libraries, Arts & Heritage", "Schools", "Regeneration", "Corporate Services"}
	types = []string{"Agency Staff", "Professional Fees", "Residential Care", "Vehicle Costs", "Gas", "Electricity",
		"Computer Licences", "Repairs & Maintenance", "Grants", "Transport Taxis", "Stationery", "Rent"}
)

type row struct {
	date     time.Time
	pence    int64
	supplier string
	service  string
	typ      string
	code     int
	txn      int
	capital  bool
}

func genRow(rng *rand.Rand, i int, base time.Time) row {
	r := row{
		date:     base.AddDate(0, 0, rng.IntN(365)),
		pence:    50_000 + rng.Int64N(5_000_000),
		supplier: supplierStems[rng.IntN(len(supplierStems))] + fmt.Sprintf(" %d ", rng.IntN(80)) + supplierTails[rng.IntN(len(supplierTails))],
		service:  services[rng.IntN(len(services))],
		typ:      types[rng.IntN(len(types))],
		code:     100 + rng.IntN(800),
		txn:      1_000_000 + i,
		capital:  rng.IntN(10) == 0,
	}
	r.supplier = strings.TrimSpace(r.supplier)
	if rng.IntN(30) == 0 {
		r.pence = -r.pence
	}
	if rng.IntN(200) == 0 {
		r.pence *= 100 // the odd large payment, for thousands separators
	}
	return r
}

func money(p int64, commas bool) string {
	neg := p < 0
	if neg {
		p = -p
	}
	ip := fmt.Sprint(p / 100)
	if commas {
		for i := len(ip) - 3; i > 0; i -= 3 {
			ip = ip[:i] + "," + ip[i:]
		}
	}
	s := fmt.Sprintf("%s.%02d", ip, p%100)
	if neg {
		return "-" + s
	}
	return s
}

func csvCell(s string) string {
	if strings.ContainsAny(s, ",\"\r\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

func writeCSV(f *File, rng *rand.Rand) error {
	fh, err := os.Create(f.CSV)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	eol := "\n"
	line := func(cells ...string) {
		for i, c := range cells {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(csvCell(c))
		}
		w.WriteString(eol)
	}
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	f.FirstRecord = 2
	switch f.Layout {
	case "dclg":
		w.WriteString("\ufeff")
		eol = "\r\n"
		f.AmountCol = "Amount"
		line("Body", "Body name", "Date", "Transaction number", "Invoice number", "Amount", "Supplier Name", "Supplier ID",
			"VAT Registration Number", "Expense Area", "Expense Type", "Expense Code", "Extended Description")
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			line("http://statistics.data.gov.uk/id/local-authority/"+f.Org, strings.ToUpper(f.Org[:1])+f.Org[1:]+" Council",
				r.date.Format("02/01/2006"), fmt.Sprint(r.txn), fmt.Sprint(r.txn*7), money(r.pence, true), r.supplier,
				fmt.Sprint(r.code*13), "GB"+fmt.Sprint(100000000+r.code*1000), r.service, r.typ, fmt.Sprint(r.code), r.typ+" for "+r.service)
		}
	case "leeds":
		eol = "\r\n"
		f.AmountCol = "NetAmount"
		line("Body", "BodyName", "ServiceLabel", "ServiceDivisionLabel", "ExpenditureCategory", "DetailedExpenditureType",
			"DetailedExpenditureCode", "DatePaid", "TransactionNumber", "NetAmount", "CapitalOrRevenue", "SupplierName")
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			cr := "R"
			if r.capital {
				cr = "C"
			}
			line("http://statistics.data.gov.uk/doc/local-authority/"+f.Org, f.Org+" council", r.service, r.service+" Division",
				"Supplies and Services", r.typ, fmt.Sprint(r.code), r.date.Format("02-Jan-2006"), fmt.Sprintf("23-%05d", i),
				money(r.pence, false), cr, r.supplier)
		}
	case "manchester":
		f.AmountCol = "Net Amount"
		w.WriteString("ï»¿")
		line("Body Name", "Service Area", "Expenses Type", "Invoice Payment Date", "Transaction Number", "Net Amount", "Supplier Name")
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			amt := strings.TrimSuffix(strings.TrimSuffix(money(r.pence, false), "0"), ".0")
			line(f.Org+" City Council", r.service, r.typ, r.date.Format(time.DateOnly), fmt.Sprint(r.txn), amt, r.supplier)
		}
	case "report":
		f.AmountCol = "Invoice Nett Amount"
		f.FirstRecord = 7
		line("Invoices Over Specified Nett Amount", "", "", "", "", "")
		line("", "", "", "", "", "")
		line("Report Date: 02/01/2024 16:59:18", "", "", "", "", "")
		line("Parameters:", "", "", "", "", "")
		line("", "", "", "", "", "")
		line("Body", "Department", "Supplier Name", "Invoice Creation Date", "Invoice Nett Amount", "Subj Description")
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			line(f.Org, r.service, r.supplier, r.date.Format("02/01/2006"), money(r.pence, false), strings.ToUpper(r.typ))
		}
	case "cp1252":
		f.AmountCol = "Value (£)"
		hdr := []string{"Supplier ", "Payment Date", "Value (\xa3)", "Service", "Type ", "Ref", "", "", "", ""}
		line(hdr...)
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			amt := "\xa3" + money(r.pence, true) + " "
			if r.pence < 0 {
				amt = "(" + money(-r.pence, true) + ")"
			}
			ref := fmt.Sprint(r.txn)
			if i%50 == 0 {
				ref = "N/A"
			}
			sup := r.supplier
			if i%7 == 0 {
				sup = strings.ReplaceAll(sup, "Services", "Servi\xe7es") // a non-ASCII byte, as Windows-1252
			}
			line(sup, r.date.Format("02/01/06"), amt, r.service, r.typ, ref, "", "", "", "")
		}
	case "excel":
		f.AmountCol = "Spend"
		line("Supplier Name", "Category Family", "Invoice GL Date", "Spend")
		for i := range f.Rows {
			r := genRow(rng, i, base)
			f.TotalPence += r.pence
			serial := int(r.date.Sub(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)).Hours()/24) + 25569
			amt := money(r.pence, false)
			if r.pence < 0 {
				amt = money(-r.pence, false) + "-"
			}
			line(r.supplier, r.typ, fmt.Sprint(serial), amt)
		}
		line("Grand Total", "", "", money(f.TotalPence, false))
		line("", "", "(c) "+f.Org, "")
	}
	if err := w.Flush(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func mappingFor(f *File) string {
	head := fmt.Sprintf("# generated by spendgen: layout %s\nstandard = \"lga/spend-over-500@1\"\napplies_to = [\"%s/spend*\"]\n", f.Layout, f.Org)
	switch f.Layout {
	case "dclg":
		return head + `
[fields.body]
from = "Body"
[fields.body_name]
from = "Body name"
[fields.date]
from = "Date"
date = "dd/mm/yyyy"
[fields.transaction_number]
from = "Transaction number"
[fields.amount]
from = "Amount"
number = "money"
[fields.supplier_name]
from = "Supplier Name"
[fields.supplier_id]
from = "Supplier ID"
[fields.vat_registration]
from = "VAT Registration Number"
[fields.expense_area]
from = "Expense Area"
[fields.expense_type]
from = "Expense Type"
[fields.expense_code]
from = "Expense Code"
[fields.description]
from = "Extended Description"
`
	case "leeds":
		return head + `
[fields.body]
from = "Body"
[fields.body_name]
from = "BodyName"
[fields.expense_area]
concat = ["ServiceLabel", "ServiceDivisionLabel"]
sep = " / "
[fields.expense_type]
from = "DetailedExpenditureType"
[fields.expense_code]
from = "DetailedExpenditureCode"
[fields.date]
from = "DatePaid"
date = "dd-Mon-yyyy"
[fields.transaction_number]
from = "TransactionNumber"
[fields.amount]
from = "NetAmount"
[fields.capital_revenue]
from = "CapitalOrRevenue"
recode = { R = "Revenue", C = "Capital" }
[fields.supplier_name]
from = "SupplierName"
`
	case "manchester":
		return head + `
[fields.body_name]
from = "Body Name"
[fields.expense_area]
from = "Service Area"
[fields.expense_type]
from = "Expenses Type"
[fields.date]
from = "Invoice Payment Date"
date = "iso"
[fields.transaction_number]
from = "Transaction Number"
[fields.amount]
from = "Net Amount"
[fields.supplier_name]
from = "Supplier Name"
`
	case "report":
		return head + `
[source]
header_row = 6
[fields.body_name]
from = "Body"
[fields.expense_area]
from = "Department"
[fields.supplier_name]
from = "Supplier Name"
[fields.date]
from = "Invoice Creation Date"
date = "dd/mm/yyyy"
[fields.amount]
from = "Invoice Nett Amount"
[fields.expense_type]
from = "Subj Description"
`
	case "cp1252":
		return head + fmt.Sprintf(`
[source]
encoding = "windows-1252"
missing = ["N/A"]
[fields.body_name]
const = "%s"
[fields.supplier_name]
from = "Supplier"
[fields.date]
from = "Payment Date"
date = "dd/mm/yy"
pivot_year = 1950
[fields.amount]
from = "Value (£)"
number = "money"
[fields.expense_area]
from = "Service"
[fields.expense_type]
from = "Type"
[fields.transaction_number]
from = "Ref"
`, f.Org)
	}
	return head + fmt.Sprintf(`
[source]
footer = { column = "Supplier Name", match = '^Grand Total$' }
[fields.body_name]
const = "%s"
[fields.supplier_name]
from = "Supplier Name"
[fields.procurement_category]
from = "Category Family"
[fields.date]
from = "Invoice GL Date"
date = "excel"
[fields.amount]
from = "Spend"
number = "money"
`, f.Org)
}
