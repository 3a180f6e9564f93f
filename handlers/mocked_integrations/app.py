"""Check a sales lead before it is stored: the CheckCustomer step of the mocked-integrations
workflow (which tests replace with mocked responses; a plain execution calls it for real).

Event: the execution input, {"leadId": str, "email": str, "company": str, "employees": int}.
Returns {"leadId", "eligible": true, "score": 0..100}; raises InvalidLead saying what is
wrong. Environment: none.
"""

from __future__ import annotations

import logging
import re
from typing import Any

FREE_MAIL_DOMAINS = frozenset({"gmail.com", "outlook.com", "yahoo.com", "hotmail.com"})
EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[a-z]{2,})$", re.IGNORECASE)

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class InvalidLead(ValueError):
    """The lead cannot be followed up."""


def check_lead(lead: Any) -> dict[str, Any]:
    """Validate a lead and score it: bigger companies score higher, a company mail domain
    adds 20 (a free-mail address says less about the buyer)."""
    if not isinstance(lead, dict):
        raise InvalidLead(f"a lead must be a JSON object, got {type(lead).__name__}")
    lead_id, email = lead.get("leadId"), lead.get("email")
    if not isinstance(lead_id, str) or not lead_id:
        raise InvalidLead("leadId must be a non-empty string")
    match = EMAIL.match(email) if isinstance(email, str) else None
    if match is None:
        raise InvalidLead(f"email is not an address: {email!r}")
    employees = lead.get("employees", 0)
    if isinstance(employees, bool) or not isinstance(employees, int) or employees < 0:
        raise InvalidLead(f"employees must be a whole number >= 0, got {employees!r}")
    company_mail = match.group(1).lower() not in FREE_MAIL_DOMAINS
    score = min(100, 10 + employees // 10 + (20 if company_mail else 0))
    return {"leadId": lead_id, "eligible": True, "score": score}


def handler(event: Any, context: Any) -> dict[str, Any]:
    result = check_lead(event)
    logger.info("Checked lead %s: score %s", result["leadId"], result["score"])
    return result
