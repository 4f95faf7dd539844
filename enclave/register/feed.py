"""The register as the HDR UK Data Use Register: one row per project, JSON and CSV.

The field names follow the HDR UK Gateway's data use register (its JSON keys, and the
column titles of its upload template as CSV headers). Fields the enclave does not record
are empty; fields that would name researchers (applicant names and IDs) stay empty by the
register's rule. ``docs/web.md`` maps every field to its source.
"""

from __future__ import annotations

import csv
import io

from pydantic import BaseModel, ConfigDict, Field

from enclave.register.policy import RegisterPolicy
from enclave.register.schemas import RegisterEntryOut

# (JSON key, CSV column title), in the HDR UK template's order; then the enclave's extensions.
FIELDS: tuple[tuple[str, str], ...] = (
    ("projectIdText", "Project ID"),
    ("projectTitle", "Project Title"),
    ("organisationName", "Organisation Name"),
    ("organisationSector", "Organisation Sector"),
    ("applicantNames", "Applicant Name(s)"),
    ("applicantId", "Applicant ID"),
    ("fundersAndSponsors", "Funders/Sponsors"),
    ("accreditedResearcherStatus", "DEA Accredited Researcher Status"),
    ("sublicenceArrangements", "Sub-Licence Arrangements (if any)?"),
    ("laySummary", "Lay Summary"),
    ("publicBenefitStatement", "Public Benefit Statement"),
    ("requestCategoryType", "Request Category Type"),
    ("technicalSummary", "Technical Summary"),
    ("otherApprovalCommittees", "Other Approval Committees"),
    ("projectStartDate", "Project Start Date"),
    ("projectEndDate", "Project End Date"),
    ("latestApprovalDate", "Latest Approval Date"),
    ("datasetTitles", "Dataset(s) Name"),
    ("dataSensitivityLevel", "Data Sensitivity Level"),
    ("legalBasisForData", "Legal Basis For Provision Of Data"),
    ("dutyOfConfidentiality", "Common Law Duty Of Confidentiality"),
    ("nationalDataOptOut", "National Data Opt-Out Applied"),
    ("requestFrequency", "Request Frequency"),
    ("dataProcessingDescription", "Description Of How The Data Will Be Processed"),
    ("confidentialDataDescription", "Description Of The Confidential Data Being Used"),
    ("accessDate", "Release/Access Date"),
    ("dataLocation", "TRE Or Any Other Specified Location"),
    ("privacyEnhancements", "How Has Data Been Processed To Enhance Privacy"),
    ("researchOutputs", "Link To Research Outputs"),
    ("status", "Status"),
    ("dataController", "Data Controller"),
    ("contactEmail", "Contact"),
    ("dataDestroyedOn", "Data Destroyed On"),
)


class DataUseOut(BaseModel):
    """One project as a row of the HDR UK Data Use Register (dates as YYYY-MM-DD, lists as lists)."""

    model_config = ConfigDict(extra="forbid")

    projectIdText: str = Field(description="Project ID: the project's short name")
    projectTitle: str
    organisationName: str
    organisationSector: str = Field(description="Not recorded: empty")
    applicantNames: list[str] = Field(description="Always empty: the register names no researchers")
    applicantId: str = Field(description="Always empty: the register names no researchers")
    fundersAndSponsors: list[str]
    accreditedResearcherStatus: str = Field(description="Not recorded: empty")
    sublicenceArrangements: str = Field(description="Not recorded: empty")
    laySummary: str
    publicBenefitStatement: str
    requestCategoryType: str = Field(description="Not recorded: empty")
    technicalSummary: str = Field(description="The project's purpose")
    otherApprovalCommittees: list[str] = Field(description="Approvals and references the project gave")
    projectStartDate: str
    projectEndDate: str
    latestApprovalDate: str | None
    datasetTitles: list[str]
    dataSensitivityLevel: str
    legalBasisForData: str = Field(description="UK GDPR Article 6 basis and Article 9 condition, in words")
    dutyOfConfidentiality: str
    nationalDataOptOut: str = Field(description="Yes or No")
    requestFrequency: str = Field(description="Not recorded: empty")
    dataProcessingDescription: str
    confidentialDataDescription: str = Field(description="The catalogue descriptions of the datasets")
    accessDate: str | None = Field(description="The first day the project had access to data")
    dataLocation: str
    privacyEnhancements: str
    researchOutputs: list[str] = Field(description="Released outputs: 'YYYY-MM-DD title'")
    status: str = Field(description="Extension: active, suspended, finished ...")
    dataController: str = Field(description="Extension: the data controller")
    contactEmail: str = Field(description="Extension: the project's public contact")
    dataDestroyedOn: str | None = Field(description="Extension: when a finished project's data were destroyed")


def _day(value: object) -> str | None:
    return value.isoformat() if value is not None else None  # type: ignore[attr-defined]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


def data_use(entry: RegisterEntryOut, policy: RegisterPolicy) -> DataUseOut:
    """``entry`` with the HDR UK Data Use Register's fields."""
    basis = entry.lawful_basis
    return DataUseOut(
        projectIdText=entry.slug, projectTitle=entry.title, organisationName=entry.organisation,
        organisationSector="", applicantNames=[], applicantId="", fundersAndSponsors=_split(entry.funders),
        accreditedResearcherStatus="", sublicenceArrangements="", laySummary=entry.lay_summary,
        publicBenefitStatement=entry.public_benefit, requestCategoryType="", technicalSummary=entry.purpose,
        otherApprovalCommittees=_split(basis.approvals), projectStartDate=entry.start_date.isoformat(),
        projectEndDate=entry.end_date.isoformat(), latestApprovalDate=_day(entry.approved_on),
        datasetTitles=[d.name for d in entry.datasets], dataSensitivityLevel=policy.data_sensitivity,
        legalBasisForData=f"UK GDPR {basis.article6_text}; {basis.article9_text}"
        if basis.article6 and basis.article9 else "Not stated",
        dutyOfConfidentiality=basis.confidentiality_text,
        nationalDataOptOut="Yes" if policy.opt_out.applied else "No", requestFrequency="",
        dataProcessingDescription=policy.processing,
        confidentialDataDescription="; ".join(f"{d.name}: {d.description}" for d in entry.datasets),
        accessDate=_day(min((d.access_from for d in entry.datasets), default=None)),
        dataLocation=policy.data_location, privacyEnhancements=policy.privacy_enhancements,
        researchOutputs=[f"{o.released_on.isoformat()} {o.title}" for o in entry.outputs],
        status=entry.status_text, dataController=entry.data_controller, contactEmail=entry.contact_email,
        dataDestroyedOn=_day(entry.data_destroyed_on),
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    text = str(value)
    # A spreadsheet runs a cell that starts like a formula: quote it so it stays text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: list[DataUseOut]) -> str:
    """The rows as CSV with the HDR UK template's column titles (lists joined by '; ')."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([title for _, title in FIELDS])
    for row in rows:
        values = row.model_dump()
        writer.writerow([_cell(values[key]) for key, _ in FIELDS])
    return out.getvalue()
