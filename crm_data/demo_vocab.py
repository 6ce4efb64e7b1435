"""The fixed vocabulary of the demo data: geography, industries, products, names, comments.

Plain constants used by :mod:`crm_data.demo`; nothing here is random.
"""

from __future__ import annotations

SEGMENTS: tuple[str, ...] = ("SMB", "Mid-Market", "Enterprise")
SEGMENT_SHARE: tuple[float, ...] = (0.62, 0.28, 0.10)

#: company sizes (employees) per segment, with their shares inside the segment
COMPANY_SIZES: tuple[tuple[tuple[str, float], ...], ...] = (
    (("1-10", 0.45), ("11-50", 0.55)),
    (("51-200", 0.6), ("201-1000", 0.4)),
    (("1001-5000", 0.65), ("5000+", 0.35)),
)

INDUSTRIES: tuple[tuple[str, float], ...] = (
    ("Software", 0.16),
    ("Retail", 0.12),
    ("Manufacturing", 0.12),
    ("Healthcare", 0.09),
    ("Financial Services", 0.10),
    ("Education", 0.07),
    ("Logistics", 0.08),
    ("Media", 0.06),
    ("Hospitality", 0.08),
    ("Professional Services", 0.12),
)

ACQUISITION_CHANNELS: tuple[tuple[str, float], ...] = (
    ("Organic search", 0.24),
    ("Paid search", 0.18),
    ("Referral", 0.14),
    ("Partner", 0.10),
    ("Events", 0.09),
    ("Outbound", 0.15),
    ("Social", 0.10),
)

#: the lead source of an account's first deal, by acquisition channel (same order)
FIRST_LEAD_SOURCE: tuple[str, ...] = (
    "Website",
    "Paid search",
    "Referral",
    "Partner",
    "Event",
    "Outbound",
    "Social",
)
#: lead sources of follow-up deals and their shares
LATER_LEAD_SOURCES: tuple[tuple[str, float], ...] = (
    ("Customer success", 0.45),
    ("Website", 0.2),
    ("Outbound", 0.15),
    ("Referral", 0.1),
    ("Event", 0.1),
)
#: additive effect of the lead source on the chance to win a deal
LEAD_SOURCE_WIN_EFFECT: dict[str, float] = {
    "Referral": 0.12,
    "Partner": 0.06,
    "Customer success": 0.15,
    "Website": 0.0,
    "Event": -0.02,
    "Paid search": -0.04,
    "Social": -0.05,
    "Outbound": -0.09,
}

#: region -> [(country, phone prefix, share inside the region, [cities])]
GEOGRAPHY: dict[str, tuple[float, list[tuple[str, str, float, list[str]]]]] = {
    "North America": (
        0.40,
        [
            (
                "United States",
                "+1",
                0.85,
                ["New York", "San Francisco", "Chicago", "Austin", "Boston", "Seattle", "Atlanta"],
            ),
            ("Canada", "+1", 0.15, ["Toronto", "Vancouver", "Montreal"]),
        ],
    ),
    "EMEA": (
        0.34,
        [
            ("United Kingdom", "+44", 0.26, ["London", "Manchester", "Edinburgh"]),
            ("Germany", "+49", 0.22, ["Berlin", "Munich", "Hamburg", "Frankfurt"]),
            ("France", "+33", 0.15, ["Paris", "Lyon", "Toulouse"]),
            ("Netherlands", "+31", 0.1, ["Amsterdam", "Rotterdam", "Utrecht"]),
            ("Spain", "+34", 0.09, ["Madrid", "Barcelona", "Valencia"]),
            ("Sweden", "+46", 0.07, ["Stockholm", "Gothenburg"]),
            ("South Africa", "+27", 0.05, ["Cape Town", "Johannesburg"]),
            ("United Arab Emirates", "+971", 0.06, ["Dubai", "Abu Dhabi"]),
        ],
    ),
    "LATAM": (
        0.10,
        [
            ("Brazil", "+55", 0.4, ["São Paulo", "Rio de Janeiro", "Belo Horizonte"]),
            ("Mexico", "+52", 0.28, ["Mexico City", "Monterrey", "Guadalajara"]),
            ("Argentina", "+54", 0.12, ["Buenos Aires", "Córdoba"]),
            ("Chile", "+56", 0.1, ["Santiago"]),
            ("Colombia", "+57", 0.1, ["Bogotá", "Medellín"]),
        ],
    ),
    "APAC": (
        0.16,
        [
            ("Australia", "+61", 0.3, ["Sydney", "Melbourne", "Brisbane"]),
            ("Japan", "+81", 0.2, ["Tokyo", "Osaka"]),
            ("Singapore", "+65", 0.15, ["Singapore"]),
            ("India", "+91", 0.25, ["Bengaluru", "Mumbai", "Pune"]),
            ("New Zealand", "+64", 0.1, ["Auckland", "Wellington"]),
        ],
    ),
}

#: (product_id, name, family, list price per seat and month, core plan?)
PRODUCTS: tuple[tuple[str, str, str, float, bool], ...] = (
    ("P01", "CRM Starter", "Core platform", 29.0, True),
    ("P02", "CRM Professional", "Core platform", 69.0, True),
    ("P03", "CRM Enterprise", "Core platform", 129.0, True),
    ("P04", "Insights Analytics", "Analytics", 19.0, False),
    ("P05", "Forecast Pro", "Analytics", 25.0, False),
    ("P06", "Helpdesk", "Service", 22.0, False),
    ("P07", "Field Service Mobile", "Service", 35.0, False),
    ("P08", "Campaigns", "Marketing", 24.0, False),
)
#: share of each core plan (P01..P03) in the first deal of each segment
CORE_PLAN_SHARE: tuple[tuple[float, float, float], ...] = (
    (0.7, 0.28, 0.02),
    (0.15, 0.7, 0.15),
    (0.0, 0.3, 0.7),
)
#: seats of a subscription: lognormal median per segment
SEATS_MEDIAN: tuple[float, ...] = (6.0, 28.0, 140.0)

#: pipeline: (stage, position, probability, is_closed, is_won)
PIPELINE: tuple[tuple[str, int, float, bool, bool], ...] = (
    ("Lead", 1, 0.10, False, False),
    ("Qualified", 2, 0.25, False, False),
    ("Proposal", 3, 0.50, False, False),
    ("Negotiation", 4, 0.75, False, False),
    ("Closed Won", 5, 1.0, True, True),
    ("Closed Lost", 5, 0.0, True, False),
)
#: median days spent in Lead, Qualified, Proposal, Negotiation, per segment
STAGE_MEDIAN_DAYS: tuple[tuple[float, float, float, float], ...] = (
    (3.0, 6.0, 8.0, 5.0),
    (6.0, 12.0, 18.0, 12.0),
    (12.0, 25.0, 40.0, 30.0),
)
LOST_REASONS: tuple[tuple[str, float], ...] = (
    ("Price", 0.27),
    ("Competitor", 0.22),
    ("No decision", 0.2),
    ("Timing", 0.12),
    ("Missing feature", 0.11),
    ("Budget", 0.08),
)
CHURN_REASONS: tuple[str, ...] = (
    "price",
    "competitor",
    "product_fit",
    "budget",
    "business_closed",
    "poor_support",
)

TEAMS: tuple[tuple[str, str, float], ...] = (
    # team, department, share of the staff
    ("Sales SMB", "Sales", 0.24),
    ("Sales Mid-Market", "Sales", 0.2),
    ("Sales Enterprise", "Sales", 0.16),
    ("Customer Success", "Customer Success", 0.2),
    ("Support", "Support", 0.2),
)

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara", "Liam",
    "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Xenia",
    "Yusuf", "Zoe", "Amir", "Bianca", "Chen", "Dara", "Emil", "Fatima", "Gustav", "Hannah", "Ivan", "Julia",
    "Kenji", "Lucia", "Marco", "Nina", "Oscar", "Priya", "Rafael", "Sofia", "Tomas", "Uma", "Victor", "Wen",
    "Aisha", "Bruno", "Chloe", "Diego", "Eva", "Felix", "Gabriela", "Henrik", "Isabel", "Jamal", "Katja", "Leo",
    "Mariana", "Nils", "Olivia", "Pedro", "Rania", "Stefan", "Tanvi", "Ugo", "Valentina", "Yara",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Müller", "García", "Kim", "Rossi", "Novak", "Silva", "Tanaka", "Johansson", "Dubois", "Patel",
    "Nguyen", "Okafor", "Kowalski", "Jensen", "Costa", "Fischer", "López", "Haddad", "Brown", "Schmidt",
    "Martin", "Ivanova", "Sato", "Andersen", "Moreau", "Khan", "Wilson", "Bauer", "Romero", "Lindqvist",
    "Hughes", "Weber", "Fernández", "Ito", "Berg", "Mendes", "Clarke", "Hoffmann", "Alvarez", "Nakamura",
    "Larsen", "Bernard", "Sharma", "Walker", "Wagner", "Torres", "Yamamoto", "Nilsson", "Lefebvre", "Gupta",
    "Evans", "Becker", "Ramos", "Kobayashi", "Olsen", "Laurent", "Reddy", "Turner", "Schulz",
)  # fmt: skip
ROLES: tuple[tuple[str, float], ...] = (
    ("Decision maker", 0.18),
    ("Champion", 0.2),
    ("User", 0.37),
    ("Finance", 0.12),
    ("IT", 0.13),
)

#: company names are <syllables> <word>; syllable triples and words give ~8.6M unique names
NAME_SYLLABLES: tuple[str, ...] = (
    "al", "bel", "cor", "dan", "el", "fer", "gal", "hal", "in", "jor", "kel", "lum", "mar", "nor", "or",
    "pra", "qui", "ros", "sol", "tal", "ul", "ver", "wes", "xan", "yor", "zen", "bri", "cas", "dor", "fin",
    "gra", "hel", "ist", "kar", "lin", "mon", "nex", "ol", "pin", "ran", "sil", "tor", "ven", "wil", "zar",
    "ax", "bo", "ca", "di", "ga", "la", "mi", "no", "ta", "ri", "sa", "vo", "te", "lo", "ka",
)  # fmt: skip
NAME_WORDS: tuple[str, ...] = (
    "Systems", "Logistics", "Foods", "Health", "Labs", "Partners", "Retail", "Analytics", "Energy", "Media",
    "Studios", "Consulting", "Industries", "Capital", "Robotics", "Hotels", "Learning", "Motors", "Pharma",
    "Networks", "Supply", "Textiles", "Bank", "Clinics", "Software", "Group", "Works", "Digital", "Freight",
    "Designs", "Outfitters", "Insurance", "Dynamics", "Goods", "Academy", "Travel", "Security", "Solar",
    "Brands", "Holdings",
)  # fmt: skip

TICKET_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("question", 0.36),
    ("billing", 0.16),
    ("defect", 0.17),
    ("return_exchange", 0.08),
    ("complaint", 0.09),
    ("other", 0.14),
)
TICKET_CHANNELS: tuple[tuple[str, float], ...] = (
    ("email", 0.42),
    ("phone", 0.22),
    ("chat", 0.26),
    ("web", 0.1),
)
#: priorities and their shares per segment
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
PRIORITY_SHARE: tuple[tuple[float, float, float, float], ...] = (
    (0.3, 0.5, 0.16, 0.04),
    (0.22, 0.5, 0.22, 0.06),
    (0.12, 0.45, 0.3, 0.13),
)

CAMPAIGN_CHANNELS: tuple[tuple[str, str, float], ...] = (
    # channel, objective, share
    ("email", "acquisition", 0.22),
    ("paid_search", "acquisition", 0.16),
    ("social", "acquisition", 0.14),
    ("webinar", "acquisition", 0.1),
    ("events", "acquisition", 0.08),
    ("email", "retention", 0.2),
    ("in_app", "retention", 0.1),
)
CAMPAIGN_THEMES: tuple[str, ...] = (
    "Spring launch", "Summer webinar series", "Back to business", "Year-end offer", "Customer stories",
    "Product update", "Loyalty rewards", "Renewal reminder", "Analytics deep dive", "Service week",
    "Partner summit", "Free trial push", "Onboarding tips", "Black Friday", "Q4 pipeline boost",
)  # fmt: skip

WEB_SOURCES: tuple[tuple[str, float, float], ...] = (
    # source, daily sessions per 1,000 accounts, impressions per session
    ("organic_search", 260.0, 18.0),
    ("paid_search", 120.0, 25.0),
    ("social", 90.0, 40.0),
    ("referral", 45.0, 6.0),
    ("email", 60.0, 3.0),
    ("direct", 150.0, 1.5),
)
SOCIAL_PLATFORMS: tuple[tuple[str, float], ...] = (
    # platform, followers per 1,000 accounts at the start
    ("LinkedIn", 900.0),
    ("X", 600.0),
    ("Facebook", 450.0),
    ("Instagram", 300.0),
    ("YouTube", 150.0),
)

#: short survey comments by sentiment (negative / neutral / positive)
COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "nps": {
        "negative": (
            "Too expensive for what we get.",
            "Support takes days to answer.",
            "The reports keep breaking after updates.",
            "We are evaluating other tools.",
            "Onboarding was confusing and nobody followed up.",
            "Still waiting for the bug we reported months ago.",
        ),
        "neutral": (
            "Does the job, nothing special.",
            "Good product, pricing could be clearer.",
            "Fine overall, the mobile app needs work.",
            "Okay, but the export options are limited.",
        ),
        "positive": (
            "Our team uses it every day, love it.",
            "Great support and a solid product.",
            "The dashboards saved us hours each week.",
            "Easy to roll out to new staff.",
            "Best CRM we have used so far.",
        ),
    },
    "ces": {
        "negative": (
            "Had to explain the issue three times.",
            "The return form kept failing.",
            "Signup asked for far too much information.",
            "Could not find the pricing page.",
        ),
        "neutral": (
            "Took a while but it worked.",
            "A few steps too many.",
            "Fine once I found the right page.",
        ),
        "positive": (
            "Solved on the first call.",
            "Signup took two minutes.",
            "Exchange was quick and painless.",
            "Found everything I needed right away.",
        ),
    },
    "csat": {
        "negative": (
            "Agent did not understand the problem.",
            "Slow and unhelpful.",
            "Issue is still not fixed.",
        ),
        "neutral": ("Resolved, eventually.", "Okay experience."),
        "positive": (
            "Friendly and fast, thanks!",
            "Great help from the support team.",
            "Perfect, thank you.",
        ),
    },
}
