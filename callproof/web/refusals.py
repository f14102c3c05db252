"""The page's words for what the shared code refuses: the rights, storage and password
modules raise their refusals in English (the CLI's language, and the log's), and the page
shows them to the operator in the page's language through these catalogue entries.

Each known refusal is matched by its English wording; the parts it names (a protocol, a
number as typed, a state) are kept as they are and put into the translated sentence.  A
refusal not listed here, and every refusal on an English page, is shown as its module wrote
it (the CLI's words, with their hints): a new one is a new entry (the catalogue test then
asks for its translations)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .i18n import N_
from .labels import status_label

#: the number reasons of callproof/numbers.py, as the page names them
NUMBER_REASONS = {"invalid": N_("not a valid number"), "too_short": N_("too few digits"),
                  "withheld": N_("withheld"), "fixed_line": N_("a fixed line: it cannot receive SMS"),
                  "toll_free": N_("a toll-free number"), "premium_rate": N_("a premium-rate number")}

_STATE = r"'(?P<state>[a-z_]+)'"
#: (the English refusal, its catalogue entry); named groups become the entry's placeholders
REFUSALS: tuple[tuple[str, str], ...] = (
    # the search form (callproof/rights/lookup.py, identity.py, requests.py)
    (r"bad date (?P<value>.+): use YYYY-MM-DD \(a local day\) or ISO-8601 with an offset",
     N_("%(value)s is not a date: use YYYY-MM-DD (a local day).")),
    (r"date range is empty: from (?P<first>\S+) is not before to (?P<last>\S+)",
     N_("The dates are the wrong way round: from %(first)s is not before to %(last)s.")),
    (r"give exactly one of protocol, phone, cpf or customer code.*",
     N_("Give exactly one of: a protocol, a phone number, a CPF or a customer code.")),
    (r"phone (?P<value>.+) is not a valid phone number \((?P<reason>\w+)\)",
     N_("Phone %(value)s is not a valid phone number (%(reason)s).")),
    (r"requester number (?P<value>.+) is not a valid phone number \((?P<reason>\w+)\)",
     N_("The requester's number %(value)s is not a valid phone number (%(reason)s).")),
    (r"deliver-to sms number (?P<value>.+) is not a valid phone number \((?P<reason>\w+)\)",
     N_("The number to deliver to, %(value)s, is not a valid phone number (%(reason)s).")),
    (r"deliver-to sms number (?P<value>.+) cannot receive SMS \((?P<reason>\w+)\)",
     N_("The number to deliver to, %(value)s, cannot receive SMS (%(reason)s).")),
    (r"deliver-to e-mail address (?P<value>.+) is not valid",
     N_("The e-mail address to deliver to, %(value)s, is not valid.")),
    (r"deliver-to must be sms:<number> or email:<address>, got (?P<value>.+)",
     N_("Deliver to sms:<number> or email:<address>, not %(value)s.")),
    (r"(?:protocol|call protocol|request protocol|\w+) must be 17 digits \(4-digit year \+ 13-digit sequence\),"
     r" got (?P<value>.+)", N_("A protocol is 17 digits (a 4-digit year and a 13-digit sequence), not %(value)s.")),
    (r"no call with protocol (?P<protocol>\d+)", N_("No call has protocol %(protocol)s.")),
    (r"no call has protocol (?P<protocol>\d+)", N_("No call has protocol %(protocol)s.")),
    (r"no recording request with (?:protocol|id) (?P<value>\S+)", N_("No recording request %(value)s.")),
    (r"recording request (?P<value>\d+) does not exist", N_("No recording request %(value)s.")),
    (r"CPF is empty", N_("The CPF is empty.")),
    (r"CPF may contain only digits, dots, dashes and spaces \(e\.g\. 123\.456\.789-09\)",
     N_("A CPF has only digits, dots, dashes and spaces (e.g. 123.456.789-09).")),
    (r"CPF must have 11 digits, got (?P<count>\d+)", N_("A CPF has 11 digits, not %(count)s.")),
    (r"CPF with all digits equal is not a real CPF", N_("A CPF with all digits equal is not a real CPF.")),
    (r"CPF check digits are wrong \(typo\?\)", N_("The CPF's check digits are wrong (a typo?).")),
    (r"CPF is not in a valid format", N_("The CPF is not in a valid format.")),
    (r"customer code is empty", N_("The customer code is empty.")),
    (r"customer code longer than (?P<count>\d+) characters",
     N_("The customer code is longer than %(count)s characters.")),
    (r"customer code contains control or other non-printable characters",
     N_("The customer code contains control or other non-printable characters.")),
    # request actions (callproof/rights/export.py, delivery.py)
    (r"request (?P<request>\d+) is waiting for an identity check; verify the requester's identity before exporting",
     N_("The request is waiting for an identity check: verify the requester's identity before exporting.")),
    (r"request (?P<request>\d+) was refused \((?P<reason>.*)\); nothing is exported",
     N_("The request was refused (%(reason)s): nothing is exported.")),
    (rf"request (?P<request>\d+) is {_STATE}; cannot export", N_("The request is %(state)s: it cannot be exported.")),
    (rf"request (?P<request>\d+) is {_STATE}; only an exported or delivered request can be delivered.*",
     N_("The request is %(state)s: only an exported or delivered request can be delivered.")),
    (r"request (?P<request>\d+) has no export to deliver; export it first",
     N_("The request has no export to deliver: export it first.")),
    (r"the call of protocol (?P<protocol>\d+) was not recorded",
     N_("The call of protocol %(protocol)s was not recorded.")),
    (r"the recording of protocol (?P<protocol>\d+) was deleted by retention.*",
     N_("The recording of protocol %(protocol)s was deleted by retention (its receipt is in the audit log).")),
    (rf"the recording of protocol (?P<protocol>\d+) is {_STATE}, not finalised; nothing to export",
     N_("The recording of protocol %(protocol)s is %(state)s, not finalised: nothing to export.")),
    (r"request (?P<request>\d+) has no (?P<via>sms|email) deliver-to.*",
     N_("The request has no %(via)s recipient: say where to send it.")),
    (r"cannot deliver via (?P<via>sms|email) to (?P<value>\S+); give a (?:sms|email) recipient",
     N_("Cannot deliver by %(via)s to %(value)s: give a %(via)s recipient.")),
    (r"export format must be one of (?P<formats>[a-z0-9, ]+), got (?P<value>.+)",
     N_("Export as one of %(formats)s, not %(value)s.")),
    (r"deliver via 'sms' or 'email', not (?P<value>.+)", N_("Deliver by SMS or e-mail, not %(value)s.")),
    (r"request (?P<request>\d+) was accepted on the call's number alone \(caller ID can be spoofed\).*",
     N_("The request was accepted on the call's number alone (caller ID can be spoofed): its link goes only to"
        " that number by SMS, until the requester returns the code sent there or you verify their identity.")),
    # an export that cannot be made or proven (callproof/rights/export.py): the cause as written
    (r"converting the recording to (?P<format>\w+) failed: (?P<detail>.+)",
     N_("Converting the recording to %(format)s failed: %(detail)s")),
    (r"rights\.export_dir (?P<value>.+) exists and is not a directory",
     N_("The export directory (rights.export_dir) %(value)s exists and is not a directory.")),
    (r"too many exports of request (?P<request>\d+) in .+",
     N_("This request has too many exports in the export directory: remove old ones first.")),
    (r"the recording of protocol (?P<protocol>\d+) cannot be decrypted: (?P<detail>.+); not exported",
     N_("The recording of protocol %(protocol)s cannot be decrypted (%(detail)s): it is not exported.")),
    (r"the recording of protocol (?P<protocol>\d+) cannot be proven: (?P<detail>.+); not exported",
     N_("The recording of protocol %(protocol)s cannot be proven (%(detail)s): it is not exported.")),
    (r"the recording of protocol (?P<protocol>\d+) changed since it was finalised \((?P<detail>[^)]+)\);"
     r" not exported", N_("The recording of protocol %(protocol)s changed since it was finalised (%(detail)s):"
                          " it is not exported.")),
    (r"exports need the private keyring \(\[encryption\]\): (?P<detail>.+)",
     N_("Exports need the private keyring ([encryption]): %(detail)s")),
    (r"the recording file of protocol (?P<protocol>\d+) cannot be read \((?P<detail>[^)]+)\): .+",
     N_("The recording file of protocol %(protocol)s cannot be read (%(detail)s).")),
    (r"recording (?P<request>\d+) is not under recording\.root .+; refusing to read it",
     N_("The recording file is outside recording.root: it is not read.")),
    # the mail settings a delivery by e-mail needs (callproof/rights/delivery.py)
    (r"config key 'rights\.smtp\.sender': required to deliver recordings by e-mail",
     N_("Delivering by e-mail needs a sender address: set rights.smtp.sender in the configuration.")),
    # web users (storage/webauth.py, callproof/web/passwords.py, callproof/config/strength.py)
    (r"username (?P<value>.+): 1-64 characters, ASCII letters, digits and \. _ @ - \(starting with a letter or digit\)",
     N_("User name %(value)s: 1 to 64 characters, ASCII letters, digits and . _ @ - (starting with a letter or"
        " digit).")),
    (r"role (?P<value>.+): one of .*", N_("Role %(value)s: choose viewer, operator or admin.")),
    (r"web user (?P<value>.+) already exists", N_("The user %(value)s already exists.")),
    (r"no web user (?P<value>.+)", N_("There is no user %(value)s.")),
    (r"empty or well-known password refused.*",
     N_("That password is empty or well known (also with digits or symbols around it): choose another.")),
    (r"password shorter than (?P<count>\d+) characters refused",
     N_("The password is shorter than %(count)s characters.")),
    (r"password longer than (?P<count>\d+) characters refused",
     N_("The password is longer than %(count)s characters.")),
    (r"password is \(or is made of\) the user name.*", N_("The password is (or is made of) the user name.")),
    (r"password has too little variety.*",
     N_("The password has too little variety (repeated characters, keyboard or alphabet runs).")),
)
_COMPILED = tuple((re.compile(pattern, re.S), message) for pattern, message in REFUSALS)


def translated(message: str, gettext: Callable[[str], str]) -> str:
    """``message`` (a refusal in English) in the reader's language; as it is when unknown."""
    for pattern, entry in _COMPILED:
        found = pattern.fullmatch(message.strip())
        if found is None:
            continue
        if gettext(entry) == entry:  # English (or an entry not translated): the module's own words
            return message
        values = {k: v for k, v in found.groupdict().items() if k != "request"}
        if "reason" in values and values["reason"] in NUMBER_REASONS:
            values["reason"] = gettext(NUMBER_REASONS[values["reason"]])
        if "state" in values:
            values["state"] = status_label(gettext, values["state"])
        if "via" in values:
            values["via"] = "SMS" if values["via"] == "sms" else gettext("e-mail")
        return gettext(entry) % values if values else gettext(entry)
    return message
