"""The words demo data is made of: names, companies, and the CRM's picklists with their weights.

Why weights: in a real CRM a few values dominate (most leads come from the
web, most deals are lost), and the maintenance jobs only show what they do
on skewed data. A weight is a relative frequency.
"""

from __future__ import annotations

import re

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Paul", "Emily",
    "Steven", "Michelle", "Andrew", "Amanda", "Kevin", "Melissa", "Brian", "Laura", "Lukas", "Anna",
    "Jonas", "Sophie", "Mateo", "Lucia", "Hugo", "Chloe", "Lars", "Ingrid", "Hiroshi", "Yuki",
    "Wei", "Mei", "Arjun", "Priya", "Omar", "Fatima", "Kwame", "Amara", "Diego", "Camila",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Rossi", "Russo",
    "Ferrari", "Dubois", "Moreau", "Laurent", "Jansen", "De Vries", "Nielsen", "Hansen", "Johansson", "Lindqvist",
    "Kowalski", "Novak", "Tanaka", "Suzuki", "Sato", "Chen", "Wang", "Kim", "Patel", "Singh", "Okafor", "Mensah",
)
# Company names: "<Prefix><stem> <Trade><suffix>", e.g. "Silverridge Logistics GmbH".
COMPANY_PREFIXES = (
    "North", "South", "East", "West", "Blue", "Red", "Green", "Silver", "Golden", "Iron",
    "Bright", "Clear", "Swift", "Summit", "Harbor", "River", "Lake", "Pine", "Oak", "Maple",
    "Cedar", "Granite", "Crystal", "Eagle", "Falcon", "Pioneer", "Atlas", "Apex", "Vertex", "Nova",
    "Stellar", "Prime", "United", "Global", "Pacific", "Atlantic", "Alpine", "Coastal", "Metro", "Union",
)
COMPANY_STEMS = (
    "ridge", "valley", "peak", "point", "bridge", "gate", "field", "stone", "wave", "light",
    "path", "bay", "rock", "star", "crest", "forge", "works", "line", "way", "park",
    "hill", "brook", "shore", "haven", "port", "mill", "grove", "spring", "wind", "fire",
    "tree", "wood", "land", "sky", "sun", "moon", "cloud", "mark", "core", "base",
)
COMPANY_TRADES = (
    "Logistics", "Systems", "Analytics", "Foods", "Pharma", "Energy", "Capital", "Partners", "Solutions", "Software",
    "Networks", "Health", "Labs", "Manufacturing", "Retail", "Media", "Consulting", "Robotics", "Materials",
    "Insurance", "Telecom", "Motors", "Engineering", "Biotech", "Textiles", "Construction", "Hospitality", "Bank",
    "Security", "Ventures",
)
COMPANY_SUFFIXES = {
    " Inc.": 30, " LLC": 15, " Ltd": 12, " GmbH": 10, "": 10, " Corp.": 6, " Group": 5, " AG": 4, " S.A.": 4,
    " B.V.": 2, " Holdings": 2,
}
# Addresses of people without a company; RFC 2606 names, so no mail reaches anyone.
PERSONAL_DOMAINS = {"mail.example": 5, "inbox.example": 3, "webmail.example": 2}
STAFF_DOMAIN = "crm-demo.example"

# Most common first: picked with a skew towards the head of the list.
INDUSTRIES = (
    "Technology", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Professional Services",
    "Education", "Telecommunications", "Energy", "Transportation & Logistics", "Media & Entertainment",
    "Real Estate", "Government", "Hospitality", "Agriculture",
)
REGIONS = {
    "North America East": 24, "North America West": 18, "UK & Ireland": 14, "DACH": 12, "Asia Pacific": 10,
    "Southern Europe": 9, "Latin America": 7, "Nordics": 6,
}
LEAD_STATUSES = {"New": 28, "Working": 18, "Nurturing": 14, "Qualified": 10, "Unqualified": 20, "Converted": 10}
LEAD_SOURCES = {
    "Web": 30, "Email Campaign": 14, "Referral": 12, "Advertisement": 10, "Social": 9, "Trade Show": 8,
    "Partner": 7, "Cold Call": 6, "Webinar": 4,
}
RATINGS = {"Hot": 15, "Warm": 35, "Cold": 50}
# stage -> (probability %, relative frequency)
DEAL_STAGES = {
    "Prospecting": (10, 18), "Qualification": (20, 14), "Needs Analysis": (40, 10), "Proposal": (60, 8),
    "Negotiation": (80, 5), "Closed Won": (100, 18), "Closed Lost": (0, 27),
}
DEAL_TYPES = {"New Business": 50, "Renewal": 20, "Upsell": 15, "Expansion": 10, "Pilot": 5}


def weighted_bag(weights: dict[str, int]) -> list[str]:
    """Each value repeated as often as its weight: a uniform pick from it honours the weights.

    Why a bag rather than cumulative weights: the SQL side then picks with one
    array subscript, ``bag[1 + floor(r * cardinality(bag))]``.

    Parameters:
      weights(dict): Value -> relative frequency (a whole number >= 0).
    """
    return [value for value, weight in weights.items() for _ in range(weight)]


def slug(text: str) -> str:
    """Lower-case letters and digits only, for e-mail addresses and user names.

    Parameters:
      text(str): A first or last name, a company prefix or trade.
    """
    return re.sub(r"[^a-z0-9]", "", text.lower())
