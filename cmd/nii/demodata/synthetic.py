#!/usr/bin/env python3
"""Generate the synthetic demo files (see README.md in this directory).

These are made up: no row describes a real payment, application or reading.
They copy the layout quirks real council files have, so that the demo's
federation shows four boroughs publishing "the same" data four ways.
The generator is seeded, so rerunning it rewrites byte-identical files:

    python3 cmd/nii/demodata/synthetic.py cmd/nii/demodata
"""

import datetime as dt
import os
import random
import sys

R = random.Random(20240601)

SUPPLIERS = [
    "Acorn Facilities Management Ltd", "Bankside Care Partnership", "Blackheath Print & Design",
    "Charlton Highways Services Ltd", "Deptford Community Transport", "Eltham Grounds Maintenance",
    "Greenline Waste Solutions Ltd", "Harbour IT Consultancy Ltd", "Kingfisher Foster Care Ltd",
    "Meridian Legal Services LLP", "Northbank Energy Ltd", "Oakwood Residential Homes Ltd",
    "Plumstead Building Contractors", "Riverside Catering Ltd", "Thames Gateway Security Ltd",
    "Woolwich Temporary Staffing Ltd", "Smith, Patel & Co Solicitors", "Quayside Housing Association",
]
SERVICES = {
    "Adult Social Care": ["Residential Care", "Home Care", "Supported Living", "Day Care"],
    "Children's Services": ["Foster Care Payments", "Independent Fostering Agency", "Legal Fees"],
    "Housing": ["Temporary Accommodation", "Repairs and Maintenance", "Housing Association Grants"],
    "Environment": ["Refuse Collection", "Grounds Maintenance", "Street Lighting Energy"],
    "Corporate Services": ["IT Software Licences", "Agency Staff", "Printing and Stationery"],
}


def amount():
    return round(R.choice([R.uniform(500, 2500), R.uniform(500, 12000), R.uniform(2000, 90000)]), 2)


def money(x):
    """1,234.56 or, for credits, (1,234.56)."""
    s = f"{abs(x):,.2f}"
    return f"({s})" if x < 0 else s


def greenwich_spend(path):
    # ISO dates, header cells with trailing spaces, credits in brackets,
    # a dozen empty trailing columns (exported from a spreadsheet).
    start = dt.date(2024, 4, 1)
    cols = ["Transaction ID ", "Date Paid ", "Directorate ", "Expense Type ", "Supplier Name ", "Amount "]
    pad = "," * 12
    lines = [",".join(cols) + pad]
    for i in range(180):
        d = start + dt.timedelta(days=R.randrange(0, 30))
        directorate = R.choice(list(SERVICES))
        x = amount()
        if R.random() < 0.05:
            x = -x
        sup = R.choice(SUPPLIERS)
        if "," in sup:
            sup = f'"{sup}"'
        amt = money(x)
        if "," in amt:
            amt = f'"{amt}"'
        lines.append(",".join([f"GRW{240000 + i * 7}", d.isoformat(), directorate,
                               R.choice(SERVICES[directorate]), sup, amt]) + pad)
    write(path, "\n".join(lines) + "\n")


def camden_spend(path):
    # dd/mm/yy dates, net/VAT/gross in separate columns, £ in the amounts,
    # a different column order, CRLF line ends.
    start = dt.date(2024, 5, 1)
    cols = ["Organisation", "Directorate", "Service Area", "Supplier Name", "Payment Date",
            "Invoice Ref", "Net Amount", "VAT", "Gross Amount"]
    lines = [",".join(cols)]
    for i in range(170):
        d = start + dt.timedelta(days=R.randrange(0, 31))
        directorate = R.choice(list(SERVICES))
        net = amount()
        vat = round(net * 0.2, 2) if R.random() < 0.6 else 0.0
        sup = R.choice(SUPPLIERS)
        if "," in sup:
            sup = f'"{sup}"'
        lines.append(",".join(["London Borough of Camden", directorate, R.choice(SERVICES[directorate]), sup,
                               d.strftime("%d/%m/%y"), f"INV-{R.randrange(100000, 999999)}",
                               f'"£{net:,.2f}"', f'"£{vat:,.2f}"', f'"£{net + vat:,.2f}"']))
    write(path, "\r\n".join(lines) + "\r\n")


STREETS = ["Trafalgar Road", "Woolwich Road", "Shooters Hill", "Eltham High Street", "Blackheath Hill",
           "Westcombe Park Road", "Plumstead Common Road", "Crooms Hill", "Vanbrugh Park", "Well Hall Road"]
WARDS = ["Greenwich Peninsula", "East Greenwich", "Blackheath Westcombe", "Eltham Town and Avery Hill",
         "Plumstead Common", "Shooters Hill", "Woolwich Arsenal"]
PROPOSALS = [
    ("HD", "Householder", "Single storey rear extension."),
    ("HD", "Householder", "Loft conversion with rear dormer and two front rooflights."),
    ("F", "Full", "Change of use of ground floor from retail (Class E) to a cafe,\ninstallation of extraction flue to rear."),
    ("F", "Full", "Demolition of existing garage and erection of a two-storey, two-bedroom dwelling."),
    ("TPO", "Works to trees (TPO)", "Crown reduction by 2m of one London Plane (T1)."),
    ("LBC", "Listed building consent", "Replacement of timber sash windows like for like."),
    ("ADV", "Advertisement", "Display of one internally illuminated fascia sign."),
    ("PN", "Prior notification", "Installation of 15m telecommunications mast and associated cabinets."),
]


def greenwich_planning(path):
    # Dates like "03 Apr 2024", quoted proposals that span lines, blank
    # decision fields for undecided cases.
    start = dt.date(2024, 3, 1)
    cols = ["Reference", "Date Received", "Date Validated", "Site Address", "Ward", "Proposal",
            "Application Type", "Status", "Decision", "Decision Date"]
    lines = [",".join(cols)]
    for i in range(110):
        code, kind, proposal = R.choice(PROPOSALS)
        rec = start + dt.timedelta(days=R.randrange(0, 60))
        val = rec + dt.timedelta(days=R.randrange(1, 15))
        decided = R.random() < 0.6
        decision = R.choice(["Granted", "Granted", "Granted with conditions", "Refused"]) if decided else ""
        ddate = (val + dt.timedelta(days=R.randrange(20, 56))).strftime("%d %b %Y") if decided else ""
        addr = f"{R.randrange(1, 240)} {R.choice(STREETS)}, London, SE{R.choice([3, 7, 9, 10, 18])}"
        lines.append(",".join([f"24/{1000 + i * 3:04d}/{code}", rec.strftime("%d %b %Y"), val.strftime("%d %b %Y"),
                               f'"{addr}"', R.choice(WARDS), f'"{proposal}"', kind,
                               "Decided" if decided else R.choice(["Registered", "Under consultation"]),
                               decision, ddate]))
    write(path, "\n".join(lines) + "\n")


SITES = [("CMD-A1", "Swiss Cottage kerbside", 51.5436, -0.1749),
         ("CMD-A2", "Euston Road roadside", 51.5282, -0.1297),
         ("CMD-A3", "Bloomsbury urban background", 51.5222, -0.1259)]


def camden_air(path):
    # Hourly sensor readings, ISO 8601 timestamps with offset, missing values
    # left empty, a status flag (P provisional, R ratified).
    cols = ["site_code", "site_name", "latitude", "longitude", "timestamp", "no2_ugm3", "pm25_ugm3",
            "pm10_ugm3", "status"]
    lines = [",".join(cols)]
    t0 = dt.datetime(2024, 6, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    for code, name, lat, lon in SITES:
        base = {"CMD-A1": 38, "CMD-A2": 55, "CMD-A3": 24}[code]
        for h in range(60):
            t = t0 + dt.timedelta(hours=h)
            rush = 1.4 if t.hour in (8, 9, 17, 18) else 1.0

            def reading(scale):
                if R.random() < 0.03:
                    return ""
                return f"{max(1.0, R.gauss(base * scale * rush, base * scale * 0.2)):.1f}"

            lines.append(",".join([code, name, f"{lat:.4f}", f"{lon:.4f}", t.isoformat(), reading(1.0),
                                   reading(0.3), reading(0.5), "P" if h >= 36 else "R"]))
    write(path, "\n".join(lines) + "\n")


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    greenwich_spend(os.path.join(out, "greenwich-spend.csv"))
    greenwich_planning(os.path.join(out, "greenwich-planning-applications.csv"))
    camden_spend(os.path.join(out, "camden-spend.csv"))
    camden_air(os.path.join(out, "camden-air-quality.csv"))
