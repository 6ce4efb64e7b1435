"""Salesforce exports as the org and its users write them, written here as BYTES and
imported through the real mapping into DuckDB and PostgreSQL; every expected figure is
worked out by hand from the fixture above it.

A. the org's own exports: a weekly Data Export folder (every field of the object, every
   cell quoted, 1 / 0 checkboxes, ``...T16:14:25.000+0000`` datetimes, the empty-reference
   id ``000000000000000AAA``, records in the recycle bin, the org's other objects beside
   ours) with a Data Loader extract (upper-case headers, true / false, ``2023-02-07
   20:47:49``), in four currencies with DatedConversionRate and CurrencyType;
B. currencies without rates: stored, never summed silently, converted once rates arrive;
C. reports and files re-saved in a spreadsheet: TRUE / FALSE and 1 / 0, US dates
   ``02/03/24`` and ``02/23/26 08:55 PM``, computed columns, an Account file without
   CreatedDate (estimated, flagged);
D. Windows-1252 text with stray UTF-8 and a byte Windows-1252 does not define.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

import kpis
from crm_data import currency
from crm_data.importing import WonAmount, import_paths
from crm_data.mappings import MappingError
from tests.crm_data.mappings import write_exports

KINDS = ["duckdb", "postgresql"]
YEARS_2023_2024 = kpis.Filters(dt.date(2023, 1, 1), dt.date(2025, 1, 1))
YEAR_2024 = kpis.Filters(dt.date(2024, 1, 1), dt.date(2025, 1, 1))


def _rows(engine: sa.Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def _setting(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return currency.read_setting(conn, key)


def _warnings(report) -> list[str]:
    return [f"{Path(w.file).name}: {w.reason}" for w in report.warnings]


# ---- A. the org's own exports ------------------------------------------------------------

# Account.csv of a weekly Data Export: every field, every cell quoted, CRLF; ParentId and
# MasterRecordId empty references written as 000000000000000AAA; the merged duplicate is
# in the recycle bin (IsDeleted 1).
ORG_ACCOUNTS = (
    b'"Id","IsDeleted","MasterRecordId","Name","Type","ParentId","BillingStreet","BillingCity",'
    b'"BillingState","BillingPostalCode","BillingCountry","BillingLatitude","BillingLongitude",'
    b'"BillingGeocodeAccuracy","ShippingStreet","ShippingCity","ShippingState",'
    b'"ShippingPostalCode","ShippingCountry","ShippingLatitude","ShippingLongitude",'
    b'"ShippingGeocodeAccuracy","Phone","Fax","AccountNumber","Website","PhotoUrl","Sic",'
    b'"Industry","AnnualRevenue","NumberOfEmployees","Ownership","TickerSymbol","Description",'
    b'"Rating","Site","CurrencyIsoCode","OwnerId","CreatedDate","CreatedById","LastModifiedDate",'
    b'"LastModifiedById","SystemModstamp","LastActivityDate","LastViewedDate",'
    b'"LastReferencedDate","Jigsaw","JigsawCompanyId","CleanStatus","AccountSource","DunsNumber",'
    b'"Tradestyle","NaicsCode","NaicsDesc","YearStarted","SicDesc"\r\n'
    b'"0015g00000LmAaAAAK","0","000000000000000AAA","Minera Andina S.A.C.","Customer - Direct",'
    b'"000000000000000AAA","Av. Javier Prado Este 4200","Lima","Lima","15023","Peru","","","","",'
    b'"","","","","","","","+51 1 611 4000","","","www.mineraandina.example",'
    b'"/services/images/photo/0015g00000LmAaAAAK","","Mining","48000000","850","","",'
    b'"Copper mine services, Arequipa and Cusco.","","","PEN","0055g00000UsRaAAAS",'
    b'"2023-11-06T14:03:11.000+0000","0055g00000UsRaAAAS","2024-05-02T08:11:54.000+0000",'
    b'"0055g00000UsRaAAAS","2024-05-02T08:11:54.000+0000","","","","","","Pending",'
    b'"Partner Referral","","","","","",""\r\n'
    b'"0015g00000LmAbAAAK","0","000000000000000AAA","Grupo Log\xc3\xadstico del Norte",'
    b'"Customer - Direct","000000000000000AAA","Av. Constituci\xc3\xb3n 2050","Monterrey","NL","64000",'
    b'"Mexico","","","","","","","","","","","","+52 81 8150 2200","","","www.glnorte.example",'
    b'"/services/images/photo/0015g00000LmAbAAAK","","Transportation","21000000","320","","","",'
    b'"","","MXN","0055g00000UsRbAAAS","2023-12-01T17:45:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-04-11T10:02:33.000+0000","0055g00000UsRaAAAS","2024-04-11T10:02:33.000+0000","","","",'
    b'"","","Pending","Web","","","","","",""\r\n'
    b'"0015g00000LmAcAAAK","0","000000000000000AAA","Caf\xc3\xa9 de Colombia Exportadora",'
    b'"Customer - Channel","000000000000000AAA","Calle 93 # 11-26","Bogot\xc3\xa1","DC","110221",'
    b'"Colombia","","","","","","","","","","","","+57 601 745 3300","","","",'
    b'"/services/images/photo/0015g00000LmAcAAAK","","Agriculture","","45","","","","","","COP",'
    b'"0055g00000UsRbAAAS","2024-01-15T13:30:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-06-01T12:00:00.000+0000","0055g00000UsRaAAAS","2024-06-01T12:00:00.000+0000","","","",'
    b'"","","Pending","Trade Show","","","","","",""\r\n'
    b'"0015g00000LmAdAAAK","0","000000000000000AAA","Acme Robotics Inc.","Prospect",'
    b'"000000000000000AAA","500 W 2nd St","Austin","TX","78701","USA","","","","","","","","","",'
    b'"","","(512) 555-0100","","","www.acmerobotics.example",'
    b'"/services/images/photo/0015g00000LmAdAAAK","","Machinery","12500000","95","","","","","",'
    b'"USD","0055g00000UsRaAAAS","2024-01-22T16:14:25.000+0000","0055g00000UsRaAAAS",'
    b'"2024-03-01T18:00:00.000+0000","0055g00000UsRaAAAS","2024-03-01T18:00:00.000+0000","","","",'
    b'"","","Pending","Web","","","","","",""\r\n'
    b'"0015g00000LmAeAAAK","1","0015g00000LmAdAAAK","ACME Robotics (duplicate)","Prospect",'
    b'"000000000000000AAA","","Austin","TX","","USA","","","","","","","","","","","","","","","",'
    b'"/services/images/photo/0015g00000LmAeAAAK","","Machinery","","","","",'
    b'"merged into Acme Robotics Inc.","","","USD","0055g00000UsRaAAAS",'
    b'"2024-01-23T09:00:00.000+0000","0055g00000UsRaAAAS","2024-01-24T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-24T09:00:00.000+0000","","","","","","Pending","Web","","","",'
    b'"","",""\r\n'
)
# Contact.csv: the last contact is private (no account: AccountId 000000000000000AAA);
# checkboxes 1 / 0 / blank.
ORG_CONTACTS = (
    b'"Id","IsDeleted","MasterRecordId","AccountId","LastName","FirstName","Salutation","Name",'
    b'"MailingStreet","MailingCity","MailingState","MailingPostalCode","MailingCountry","Phone",'
    b'"Fax","MobilePhone","ReportsToId","Email","Title","Department","LeadSource","Birthdate",'
    b'"Description","CurrencyIsoCode","OwnerId","HasOptedOutOfEmail","DoNotCall","CreatedDate",'
    b'"CreatedById","LastModifiedDate","LastModifiedById","SystemModstamp","LastActivityDate",'
    b'"EmailBouncedReason","EmailBouncedDate","IsEmailBounced","Jigsaw","CleanStatus"\r\n'
    b'"0035g00000CtAaAAAS","0","000000000000000AAA","0015g00000LmAaAAAK","Quispe","Rosa","Sra.",'
    b'"Rosa Quispe","","","","","","","","","000000000000000AAA","rquispe@mineraandina.example",'
    b'"Gerente de Compras","","","","","PEN","0055g00000UsRaAAAS","0","0",'
    b'"2023-11-06T14:20:00.000+0000","0055g00000UsRaAAAS","2023-11-06T14:20:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-11-06T14:20:00.000+0000","","","","0","","Pending"\r\n'
    b'"0035g00000CtAbAAAS","0","000000000000000AAA","0015g00000LmAbAAAK","Garza","Luis","Sr.",'
    b'"Luis Garza","","","","","","","","","000000000000000AAA","lgarza@glnorte.example",'
    b'"Director de Operaciones","","","","","MXN","0055g00000UsRaAAAS","","0",'
    b'"2023-12-01T18:00:00.000+0000","0055g00000UsRaAAAS","2023-12-01T18:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-12-01T18:00:00.000+0000","","","","0","","Pending"\r\n'
    b'"0035g00000CtAcAAAS","0","000000000000000AAA","000000000000000AAA","Fischer","Anna","Ms.",'
    b'"Anna Fischer","","","","","","","","","000000000000000AAA","anna.fischer@mail.example","",'
    b'"","","","","USD","0055g00000UsRaAAAS","1","0","2024-02-10T11:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-02-10T11:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-02-10T11:00:00.000+0000","","","","0","","Pending"\r\n'
)
# Opportunity.csv: CurrencyIsoCode in four currencies, checkboxes 1 / 0, the duplicate's
# opportunity in the recycle bin, CampaignId / ContactId empty (000000000000000AAA).
ORG_OPPORTUNITIES = (
    b'"Id","IsDeleted","AccountId","IsPrivate","Name","Description","StageName","Amount",'
    b'"Probability","ExpectedRevenue","TotalOpportunityQuantity","CloseDate","Type","NextStep",'
    b'"LeadSource","IsClosed","IsWon","ForecastCategory","ForecastCategoryName","CurrencyIsoCode",'
    b'"CampaignId","HasOpportunityLineItem","Pricebook2Id","OwnerId","CreatedDate","CreatedById",'
    b'"LastModifiedDate","LastModifiedById","SystemModstamp","LastActivityDate","PushCount",'
    b'"LastStageChangeDate","FiscalQuarter","FiscalYear","Fiscal","ContactId","LastViewedDate",'
    b'"LastReferencedDate","HasOpenActivity","HasOverdueTask","LastAmountChangedHistoryId",'
    b'"LastCloseDateChangedHistoryId"\r\n'
    b'"0065g00000OpBaAAAS","0","0015g00000LmAaAAAK","0","Minera Andina - Chancadora","",'
    b'"Closed Won","375000","100","375000","","2024-02-15","New Customer","","Web","1","1",'
    b'"Closed","Closed","PEN","000000000000000AAA","0","","0055g00000UsRaAAAS",'
    b'"2024-01-08T15:20:00.000+0000","0055g00000UsRaAAAS","2024-01-08T15:20:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-08T15:20:00.000+0000","","0","2024-01-08T15:20:00.000+0000",'
    b'"1","2024","2024 1","000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBbAAAS","0","0015g00000LmAaAAAK","0","Minera Andina - Repuestos","",'
    b'"Closed Lost","120000","0","0","","2024-03-20","New Customer","","Partner Referral","1","0",'
    b'"Omitted","Omitted","PEN","000000000000000AAA","0","","0055g00000UsRaAAAS",'
    b'"2024-01-10T10:00:00.000+0000","0055g00000UsRaAAAS","2024-01-10T10:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-10T10:00:00.000+0000","","0","2024-01-10T10:00:00.000+0000",'
    b'"1","2024","2024 1","000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBcAAAS","0","0015g00000LmAbAAAK","0","GLN - Flota 2024","","Closed Won",'
    b'"850000","100","850000","","2024-04-10","New Customer","","Web","1","1","Closed","Closed",'
    b'"MXN","000000000000000AAA","0","","0055g00000UsRbAAAS","2024-02-01T16:30:00.000+0000",'
    b'"0055g00000UsRbAAAS","2024-02-01T16:30:00.000+0000","0055g00000UsRbAAAS",'
    b'"2024-02-01T16:30:00.000+0000","","0","2024-02-01T16:30:00.000+0000","2","2024","2024 2",'
    b'"000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBdAAAS","0","0015g00000LmAcAAAK","0","Caf\xc3\xa9 Exportadora - Tostadora","",'
    b'"Closed Won","200000000","100","200000000","","2024-05-31","New Customer","",'
    b'"Partner Referral","1","1","Closed","Closed","COP","000000000000000AAA","0","",'
    b'"0055g00000UsRbAAAS","2024-02-20T14:00:00.000+0000","0055g00000UsRbAAAS",'
    b'"2024-02-20T14:00:00.000+0000","0055g00000UsRbAAAS","2024-02-20T14:00:00.000+0000","","0",'
    b'"2024-02-20T14:00:00.000+0000","2","2024","2024 2","000000000000000AAA","","","0","0","",'
    b'""\r\n'
    b'"0065g00000OpBeAAAS","0","0015g00000LmAdAAAK","0","Acme - Pilot cell","","Closed Won",'
    b'"50000","100","50000","","2024-03-01","New Customer","","Web","1","1","Closed","Closed",'
    b'"USD","000000000000000AAA","0","","0055g00000UsRaAAAS","2024-01-25T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-25T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-25T09:00:00.000+0000","","0","2024-01-25T09:00:00.000+0000","1","2024","2024 1",'
    b'"000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBfAAAS","0","0015g00000LmAdAAAK","0","Acme - Line 2","","Negotiation/Review",'
    b'"80000","90","72000","","2024-09-30","New Customer","","Partner Referral","0","0","Commit",'
    b'"Commit","USD","000000000000000AAA","0","","0055g00000UsRaAAAS",'
    b'"2024-03-05T10:00:00.000+0000","0055g00000UsRaAAAS","2024-03-05T10:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-03-05T10:00:00.000+0000","","0","2024-03-05T10:00:00.000+0000",'
    b'"3","2024","2024 3","000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBgAAAS","0","0015g00000LmAbAAAK","0","GLN - Almac\xc3\xa9n Apodaca","",'
    b'"Proposal/Price Quote","300000","75","225000","","2024-10-15","New Customer","","Web","0",'
    b'"0","Pipeline","Pipeline","MXN","000000000000000AAA","0","","0055g00000UsRbAAAS",'
    b'"2024-04-20T11:00:00.000+0000","0055g00000UsRbAAAS","2024-04-20T11:00:00.000+0000",'
    b'"0055g00000UsRbAAAS","2024-04-20T11:00:00.000+0000","","0","2024-04-20T11:00:00.000+0000",'
    b'"4","2024","2024 4","000000000000000AAA","","","0","0","",""\r\n'
    b'"0065g00000OpBhAAAS","1","0015g00000LmAdAAAK","0","ACME Robotics (duplicate) - Pilot","",'
    b'"Closed Won","999999","100","999999","","2024-02-01","New Customer","","Partner Referral",'
    b'"1","1","Closed","Closed","USD","000000000000000AAA","0","","0055g00000UsRaAAAS",'
    b'"2024-01-23T09:30:00.000+0000","0055g00000UsRaAAAS","2024-01-23T09:30:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-23T09:30:00.000+0000","","0","2024-01-23T09:30:00.000+0000",'
    b'"1","2024","2024 1","000000000000000AAA","","","0","0","",""\r\n'
)
# OpportunityHistory.csv of the two open opportunities (their current stage).
ORG_OPPORTUNITY_HISTORY = (
    b'"Id","OpportunityId","CreatedById","CreatedDate","StageName","Amount","ExpectedRevenue",'
    b'"CloseDate","Probability","ForecastCategory","SystemModstamp","IsDeleted","CurrencyIsoCode",'
    b'"PrevAmount","PrevCloseDate"\r\n'
    b'"0085g00000HsBaAAAS","0065g00000OpBfAAAS","0055g00000UsRaAAAS",'
    b'"2024-03-05T10:00:00.000+0000","Prospecting","80000","","2024-09-30","10","Pipeline",'
    b'"2024-03-05T10:00:00.000+0000","0","USD","",""\r\n'
    b'"0085g00000HsBbAAAS","0065g00000OpBfAAAS","0055g00000UsRaAAAS",'
    b'"2024-05-14T15:30:00.000+0000","Negotiation/Review","80000","","2024-09-30","90","Commit",'
    b'"2024-05-14T15:30:00.000+0000","0","USD","",""\r\n'
    b'"0085g00000HsBcAAAS","0065g00000OpBgAAAS","0055g00000UsRaAAAS",'
    b'"2024-04-20T11:00:00.000+0000","Qualification","300000","","2024-10-15","10","Pipeline",'
    b'"2024-04-20T11:00:00.000+0000","0","MXN","",""\r\n'
    b'"0085g00000HsBdAAAS","0065g00000OpBgAAAS","0055g00000UsRaAAAS",'
    b'"2024-06-03T09:45:00.000+0000","Proposal/Price Quote","300000","","2024-10-15","75",'
    b'"Pipeline","2024-06-03T09:45:00.000+0000","0","MXN","",""\r\n'
)
# extract.csv: Cases exported with Data Loader (upper-case headers, true / false, blank
# IsEscalated, datetimes without an offset: UTC); the web case has no contact and no
# account (000000000000000AAA).
ORG_CASES = (
    b'"ID","ISDELETED","MASTERRECORDID","CASENUMBER","CONTACTID","ACCOUNTID","ASSETID","PARENTID",'
    b'"SUPPLIEDNAME","SUPPLIEDEMAIL","SUPPLIEDPHONE","SUPPLIEDCOMPANY","TYPE","STATUS","REASON",'
    b'"ORIGIN","SUBJECT","PRIORITY","DESCRIPTION","ISCLOSED","CLOSEDDATE","ISESCALATED",'
    b'"CURRENCYISOCODE","OWNERID","CREATEDDATE","CREATEDBYID","LASTMODIFIEDDATE",'
    b'"LASTMODIFIEDBYID","SYSTEMMODSTAMP","CONTACTPHONE","CONTACTEMAIL","LASTVIEWEDDATE",'
    b'"LASTREFERENCEDDATE"\r\n'
    b'"5005g00000CsBaAAAS","false","","00001026","0035g00000CtAaAAAS","0015g00000LmAaAAAK","","",'
    b'"","","","","Problem","Closed","","Phone","Chancadora detenida","High","","true",'
    b'"2023-02-08 09:15:00","false","PEN","0055g00000UsRbAAAS","2023-02-07 20:47:49",'
    b'"0055g00000UsRbAAAS","2023-02-08 09:15:00","0055g00000UsRbAAAS","2023-02-08 09:15:00","","",'
    b'"",""\r\n'
    b'"5005g00000CsBbAAAS","false","","00001027","0035g00000CtAbAAAS","0015g00000LmAbAAAK","","",'
    b'"","","","","Question","Closed","","Email","Factura de abril","Low","","true",'
    b'"2024-04-03 16:00:00","","MXN","0055g00000UsRbAAAS","2024-04-02 14:05:10",'
    b'"0055g00000UsRbAAAS","2024-04-03 16:00:00","0055g00000UsRbAAAS","2024-04-03 16:00:00","","",'
    b'"",""\r\n'
    b'"5005g00000CsBcAAAS","false","","00001028","000000000000000AAA","000000000000000AAA","","",'
    b'"Anna Fischer","anna.fischer@mail.example","","","Problem","Closed","","Web","Login fails",'
    b'"Medium","","true","2024-04-05 08:30:00","false","USD","0055g00000UsRbAAAS",'
    b'"2024-04-04 22:10:00","0055g00000UsRbAAAS","2024-04-05 08:30:00","0055g00000UsRbAAAS",'
    b'"2024-04-05 08:30:00","","","",""\r\n'
    b'"5005g00000CsBdAAAS","false","","00001029","0035g00000CtAaAAAS","0015g00000LmAaAAAK","","",'
    b'"","","","","Feature Request","New","","Web","API para reportes","Low","","false","",'
    b'"false","PEN","0055g00000UsRbAAAS","2024-05-06 09:40:00","0055g00000UsRbAAAS",'
    b'"2024-05-06 09:40:00","0055g00000UsRbAAAS","2024-05-06 09:40:00","","","",""\r\n'
)
# DatedConversionRate.csv (advanced currency management; corporate currency USD): each
# currency's first range starts "at the beginning" (0000-12-30). No dated rates for COP.
ORG_DATED_RATES = (
    b'"Id","IsoCode","ConversionRate","NextStartDate","StartDate","CreatedDate","CreatedById",'
    b'"LastModifiedDate","LastModifiedById","SystemModstamp"\r\n'
    b'"04w5g00000DrBaAAAS","USD","1","","0000-12-30","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
    b'"04w5g00000DrBbAAAS","PEN","3.8","2024-01-01","0000-12-30","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
    b'"04w5g00000DrBcAAAS","PEN","3.75","2024-04-01","2024-01-01","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
    b'"04w5g00000DrBdAAAS","PEN","3.7","","2024-04-01","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
    b'"04w5g00000DrBeAAAS","MXN","17","2024-04-01","0000-12-30","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
    b'"04w5g00000DrBfAAAS","MXN","16.5","","2024-04-01","2024-01-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2024-01-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2024-01-02T09:00:00.000+0000"\r\n'
)
# CurrencyType.csv: USD is the corporate currency; static rates (PEN and MXN are dated
# above: their static rates are not used; COP has only this one).
ORG_CURRENCIES = (
    b'"Id","IsoCode","ConversionRate","DecimalPlaces","IsActive","IsCorporate","CreatedDate",'
    b'"CreatedById","LastModifiedDate","LastModifiedById","SystemModstamp"\r\n'
    b'"02c5g00000CuBaAAAS","USD","1","2","1","1","2023-10-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-10-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2023-10-02T09:00:00.000+0000"\r\n'
    b'"02c5g00000CuBbAAAS","PEN","3.72","2","1","0","2023-10-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-10-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2023-10-02T09:00:00.000+0000"\r\n'
    b'"02c5g00000CuBcAAAS","MXN","16.8","2","1","0","2023-10-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-10-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2023-10-02T09:00:00.000+0000"\r\n'
    b'"02c5g00000CuBdAAAS","COP","4000","2","1","0","2023-10-02T09:00:00.000+0000",'
    b'"0055g00000UsRaAAAS","2023-10-02T09:00:00.000+0000","0055g00000UsRaAAAS",'
    b'"2023-10-02T09:00:00.000+0000"\r\n'
)
# Other objects of the same weekly Data Export: Product2.csv and User.csv have Id and Name
# (an Account export's columns) and OpportunityLineItem.csv is named like an Opportunity
# export; none of them is ours.
ORG_OTHER_OBJECTS = {
    "Product2.csv": (
        b'"Id","Name","ProductCode","Description","IsActive","CreatedDate","CreatedById","Family",'
        b'"CurrencyIsoCode","IsDeleted"\r\n'
        b'"01t5g00000PrAaAAAK","Chancadora C120","CH-120","","1","2023-10-02T09:00:00.000+0000",'
        b'"0055g00000UsRaAAAS","Hardware","USD","0"\r\n'
    ),
    "User.csv": (
        b'"Id","Username","LastName","FirstName","Name","Email","IsActive","CreatedDate"\r\n'
        b'"0055g00000UsRaAAAS","maria.torres@example.com","Torres","Mar\xc3\xada","Mar\xc3\xada Torres",'
        b'"maria.torres@example.com","1","2023-10-02T09:00:00.000+0000"\r\n'
    ),
    "OpportunityLineItem.csv": (
        b'"Id","OpportunityId","SortOrder","PricebookEntryId","Product2Id","ProductCode","Name","Quantity",'
        b'"TotalPrice","UnitPrice","CurrencyIsoCode","IsDeleted"\r\n'
        b'"00k5g00000LiAaAAAK","0065g00000OpBaAAAS","1","01u5g00000PeAaAAAK","01t5g00000PrAaAAAK","CH-120",'
        b'"Minera Andina - Chancadora Chancadora C120","1","375000","375000","PEN","0"\r\n'
    ),
    "AccountHistory.csv": (
        b'"Id","IsDeleted","AccountId","CreatedById","CreatedDate","Field","OldValue","NewValue"\r\n'
        b'"0175g00000AhAaAAAK","0","0015g00000LmAaAAAK","0055g00000UsRaAAAS","2024-05-02T08:11:54.000+0000",'
        b'"Industry","","Mining"\r\n'
    ),
    "CampaignMemberStatus.csv": (
        b'"Id","IsDeleted","CampaignId","Label","SortOrder","IsDefault","HasResponded","CreatedDate"\r\n'
        b'"01Y5g00000CmsAAAAS","0","7015g00000CmBaAAAS","Sent","1","1","0","2023-10-02T09:00:00.000+0000"\r\n'
    ),
}


def _org_folder(folder: Path, **leave_out: bool) -> Path:
    files = {
        "Account.csv": ORG_ACCOUNTS,
        "Contact.csv": ORG_CONTACTS,
        "Opportunity.csv": ORG_OPPORTUNITIES,
        "OpportunityHistory.csv": ORG_OPPORTUNITY_HISTORY,
        "extract.csv": ORG_CASES,
        "DatedConversionRate.csv": ORG_DATED_RATES,
        "CurrencyType.csv": ORG_CURRENCIES,
        **ORG_OTHER_OBJECTS,
    }
    return write_exports(
        folder, {name: data for name, data in files.items() if not leave_out.get(name.split(".")[0])}
    )


#: The conversion into USD, by hand (Salesforce's ConversionRate: units of the currency per USD):
#: O1 375,000 PEN won 2024-02-15: PEN rate from 2024-01-01 is 3.75 -> 100,000
#: O2 120,000 PEN lost 2024-03-20: 3.75 -> 32,000
#: O3 850,000 MXN won 2024-04-10: MXN rate from 2024-04-01 is 16.5 -> 51,515.1515...
#: O4 200,000,000 COP won 2024-05-31: no dated COP rate; CurrencyType's static 4,000 -> 50,000
#:    (the static PEN and MXN rates lose to the dated ones, which start a day after them)
#: O5 50,000 USD won: the corporate currency -> 50,000
#: O6 80,000 USD open -> 80,000
#: O7 300,000 MXN open: today's rate, the latest (16.5) -> 18,181.8181...
ORG_DEALS = [
    ("0065g00000OpBaAAAS", "won", 375000.0, "PEN", 100000.0, dt.datetime(2024, 2, 15)),
    ("0065g00000OpBbAAAS", "lost", 120000.0, "PEN", 32000.0, dt.datetime(2024, 3, 20)),
    ("0065g00000OpBcAAAS", "won", 850000.0, "MXN", 850000 / 16.5, dt.datetime(2024, 4, 10)),
    ("0065g00000OpBdAAAS", "won", 200000000.0, "COP", 50000.0, dt.datetime(2024, 5, 31)),
    ("0065g00000OpBeAAAS", "won", 50000.0, "USD", 50000.0, dt.datetime(2024, 3, 1)),
    ("0065g00000OpBfAAAS", "open", 80000.0, "USD", 80000.0, None),
    ("0065g00000OpBgAAAS", "open", 300000.0, "MXN", 300000 / 16.5, None),
]


def _deals(engine: sa.Engine) -> list[tuple]:
    return _rows(
        engine,
        "SELECT deal_id, status, amount_original, currency, amount, closed_at FROM deals ORDER BY deal_id",
    )


def _assert_deals(engine: sa.Engine, expected: list[tuple]) -> None:
    found = _deals(engine)
    assert [(*row[:4], row[5]) for row in found] == [(*row[:4], row[5]) for row in expected]
    assert [row[4] for row in found] == pytest.approx([row[4] for row in expected])


@pytest.mark.parametrize("kind", KINDS)
def test_a_weekly_data_export_in_four_currencies(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    report = import_paths(engine, [_org_folder(tmp_path / "WE_00D5g000004ABCD_1")], mapping="salesforce")
    assert report.ok, report.render()
    assert report.rows == {
        "accounts": 4,  # the merged duplicate (IsDeleted 1) is not imported
        "exchange_rates": 10,  # 6 dated (the first ones from 1900-01-02) + 4 static (from 1900-01-01)
        "pipeline_stages": 10,
        "contacts": 3,
        "deals": 7,  # the duplicate's opportunity (IsDeleted 1) is not imported
        "tickets": 4,
        "deal_stage_history": 4,
    }
    # the org's other objects are skipped by the mapping's ignore list (Product2 and User have an
    # Account export's columns); Data Loader's extract.csv is read for its columns, and said so
    assert _warnings(report) == [
        "extract.csv: read as the case export: recognised by its columns (Id, CaseNumber), not by its name"
    ]
    # 000000000000000AAA is no reference: no parent, not an id
    assert _rows(engine, "SELECT contact_id, account_id FROM contacts ORDER BY 1")[2] == (
        "0035g00000CtAcAAAS",
        None,
    )
    assert _rows(engine, "SELECT ticket_id, account_id FROM tickets ORDER BY 1")[2] == (
        "5005g00000CsBcAAAS",
        None,
    )
    # datetimes: +0000 is UTC; the extract's 2023-02-07 20:47:49 (no offset) is UTC as written
    assert _rows(engine, "SELECT created_at FROM accounts ORDER BY account_id")[3] == (
        dt.datetime(2024, 1, 22, 16, 14, 25),
    )
    assert _rows(engine, "SELECT opened_at, resolved_at FROM tickets ORDER BY ticket_id")[0] == (
        dt.datetime(2023, 2, 7, 20, 47, 49),
        dt.datetime(2023, 2, 8, 9, 15),
    )
    # the corporate currency of CurrencyType is the reporting currency; every currency has a rate
    assert _setting(engine, currency.REPORTING_CURRENCY) == "USD"
    assert _setting(engine, currency.UNCONVERTED) is None
    assert _rows(engine, "SELECT currency, valid_from, rate_to_reporting FROM exchange_rates ORDER BY 1, 2")[
        :4
    ] == [
        ("COP", dt.date(1900, 1, 1), pytest.approx(1 / 4000)),  # static: COP has no dated rate
        ("MXN", dt.date(1900, 1, 1), pytest.approx(1 / 16.8)),  # static: never used, a dated rate follows
        ("MXN", dt.date(1900, 1, 2), pytest.approx(1 / 17)),  # dated, "from the beginning" (0000-12-30)
        ("MXN", dt.date(2024, 4, 1), pytest.approx(1 / 16.5)),
    ]
    _assert_deals(engine, ORG_DEALS)
    # KPIs read amount as they always did: won 4 (Feb, Mar, Apr, May), lost 1 (Mar) in 2024
    wins = kpis.win_rate(engine, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"], wins.loc[0, "win_rate"]) == (4, 1, pytest.approx(0.8))
    # weighted pipeline in USD: O6 in Negotiation/Review (0.9) 80,000 -> 72,000;
    # O7 in Proposal/Price Quote (0.75) 18,181.82 -> 13,636.36
    pipeline = kpis.weighted_pipeline(engine, YEAR_2024).set_index("stage")
    assert pipeline.loc["Negotiation/Review", "weighted_amount"] == pytest.approx(72000.0)
    assert pipeline.loc["Proposal/Price Quote", "weighted_amount"] == pytest.approx(300000 / 16.5 * 0.75)
    assert pipeline["weighted_amount"].sum() == pytest.approx(72000 + 300000 / 16.5 * 0.75)
    # closed cases whose IsClosed is true are resolved: 2023: 1; 2024: 2 (the open one is not);
    # Salesforce records no contact count: resolved, and the rate is unknown (NaN), not 0 %
    fcr = kpis.first_contact_resolution(engine, YEARS_2023_2024, "year")
    assert fcr["resolved"].tolist() == [1, 2]
    assert (fcr["recorded"].tolist(), fcr["first_contact"].tolist()) == ([0, 0], [0, 0])
    assert fcr["fcr_rate"].isna().all()
    # the import's summary: won deals per currency as the CRM shows them, and in USD
    assert report.won_by_currency == [
        WonAmount("COP", 1, 200000000.0, pytest.approx(50000.0)),
        WonAmount("MXN", 1, 850000.0, pytest.approx(850000 / 16.5)),
        WonAmount("PEN", 1, 375000.0, pytest.approx(100000.0)),
        WonAmount("USD", 1, 50000.0, pytest.approx(50000.0)),
    ]
    assert "  COP                             1     200,000,000.00          50,000.00" in report.render()
    assert "  total                           4                            251,515.15" in report.render()
    # importing the same export again changes nothing
    again = import_paths(engine, [_org_folder(tmp_path / "WE_00D5g000004ABCD_1")], mapping="salesforce")
    assert again.ok and sum(again.written.values()) == 0, again.render()
    _assert_deals(engine, ORG_DEALS)


def test_a_blank_or_unknown_checkbox_is_an_error_not_an_open_deal(make_db, tmp_path: Path) -> None:
    # O2 (line 3; the header is line 1) with a blank IsClosed: no status, reported with its line
    blank = ORG_OPPORTUNITIES.replace(
        b'"2024-03-20","New Customer","","Partner Referral","1","0"',
        b'"2024-03-20","New Customer","","Partner Referral","","0"',
    )
    assert blank != ORG_OPPORTUNITIES
    engine = make_db("duckdb")
    report = import_paths(
        engine,
        [write_exports(tmp_path / "a", {"Account.csv": ORG_ACCOUNTS, "Opportunity.csv": blank})],
        mapping="salesforce",
    )
    assert [(Path(e.file).name, e.row, e.column, e.reason) for e in report.errors] == [
        ("Opportunity.csv", 3, "status", "required value is empty")
    ]
    # O3 (line 4) with IsWon "Ja": not a yes/no value
    unknown = ORG_OPPORTUNITIES.replace(
        b'"2024-04-10","New Customer","","Web","1","1"', b'"2024-04-10","New Customer","","Web","1","Ja"'
    )
    assert unknown != ORG_OPPORTUNITIES
    with pytest.raises(MappingError, match=r"Opportunity.csv:4:IsWon: 'Ja' is not a yes/no value"):
        import_paths(
            engine,
            [write_exports(tmp_path / "b", {"Account.csv": ORG_ACCOUNTS, "Opportunity.csv": unknown})],
            mapping="salesforce",
        )
    assert _rows(engine, "SELECT count(*) FROM deals") == [(0,)]


# ---- B. currencies without rates ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_without_exchange_rates_nothing_is_summed_silently(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    folder = _org_folder(tmp_path / "export", DatedConversionRate=True, CurrencyType=True)
    report = import_paths(engine, [folder], mapping="salesforce")
    assert report.ok, report.render()
    # no corporate currency, no rates: the deals keep the amounts as written ...
    _assert_deals(engine, [(*row[:4], row[2], row[5]) for row in ORG_DEALS])
    # ... and the import says so, the database records it for the dashboard
    assert _setting(engine, currency.REPORTING_CURRENCY) is None
    assert _setting(engine, currency.UNCONVERTED) == "COP,MXN,PEN,USD"
    assert [w for w in _warnings(report) if w.startswith("currencies:")] == [
        "currencies: no reporting currency is set, so amounts in COP (1 deals), MXN (2 deals), PEN (2 deals), "
        "USD (2 deals) are stored as written, NOT converted: money figures would mix them. Import the currency "
        "settings (Salesforce: CurrencyType.csv) or give --reporting-currency, with exchange rates"
    ]
    assert [(w.currency, w.amount, w.in_reporting) for w in report.won_by_currency] == [
        ("COP", 200000000.0, None),
        ("MXN", 850000.0, None),
        ("PEN", 375000.0, None),
        ("USD", 50000.0, None),
    ]
    assert "total" not in report.render()  # no total of amounts in several currencies


@pytest.mark.parametrize("kind", KINDS)
def test_a_currency_missing_from_the_dated_rates_waits_for_its_rate(
    kind: str, make_db, tmp_path: Path
) -> None:
    engine = make_db(kind)
    # the dated rates alone (no CurrencyType): the reporting currency is given; COP has no rate
    folder = _org_folder(tmp_path / "export", CurrencyType=True)
    report = import_paths(engine, [folder], mapping="salesforce", reporting_currency="USD")
    assert report.ok, report.render()
    cop = ("0065g00000OpBdAAAS", "won", 200000000.0, "COP", 200000000.0, dt.datetime(2024, 5, 31))
    _assert_deals(engine, [cop if row[3] == "COP" else row for row in ORG_DEALS])
    assert _setting(engine, currency.UNCONVERTED) == "COP"
    assert [w for w in _warnings(report) if w.startswith("currencies:")] == [
        "currencies: no exchange rate into USD for COP (1 deals): these amounts are stored as written, NOT "
        "converted, and money figures mix them (the dashboard says so). Import exchange rates (Salesforce: "
        "DatedConversionRate.csv or CurrencyType.csv; or an exchange_rates.csv)"
    ]
    # CurrencyType.csv later: COP's static rate converts the stored deal; nothing else moves
    later = import_paths(
        engine,
        [write_exports(tmp_path / "later", {"CurrencyType.csv": ORG_CURRENCIES})],
        mapping="salesforce",
    )
    assert later.ok, later.render()
    assert later.written["deals"] == 1
    _assert_deals(engine, ORG_DEALS)
    assert _setting(engine, currency.UNCONVERTED) is None


# ---- C. reports and files re-saved in a spreadsheet ----------------------------------------

# Account.csv saved by Excel ("CSV UTF-8": a byte-order mark, quotes only where needed): no
# CreatedDate, a computed column; Tailspin Toys has no record of its own in the import
REPORT_ACCOUNTS = (
    b"\xef\xbb\xbfId,Name,Type,Industry,NumberOfEmployees,BillingCity,BillingCountry,OwnerId,Account Age (days)\r\n"
    b"0015g00000RpAaAAAK,Northwind Traders,Customer - Direct,Wholesale,120,Seattle,USA,0055g00000UsRaAAAS,1084\r\n"
    b'0015g00000RpAbAAAK,"Contoso, Ltd.",Customer - Channel,Technology,2400,Redmond,USA,0055g00000UsRbAAAS,1102\r\n'
    b"0015g00000RpAcAAAK,Tailspin Toys,Prospect,Retail,35,Chicago,USA,0055g00000UsRaAAAS,12\r\n"
)
# Contact.csv: US dates with a 12-hour clock; 12/18/23 says month first
REPORT_CONTACTS = (
    b"Id,AccountId,FirstName,LastName,Email,Title,CreatedDate\r\n"
    b"0035g00000RcAaAAAK,0015g00000RpAaAAAK,Nancy,Davolio,nancy@northwind.example,Buyer,12/18/23 09:30 AM\r\n"
    b"0035g00000RcAbAAAK,0015g00000RpAbAAAK,Satya,Rao,satya@contoso.example,CIO,03/04/24 02:15 PM\r\n"
)
# Opportunity.csv re-saved in Excel: TRUE / FALSE, amounts with thousands separators, US
# dates (02/03/24 is 3 February: 03/28/24 says month first), 02/23/26 08:55 PM, computed
# columns (Age, Fiscal Period)
REPORT_OPPORTUNITIES = (
    b"Id,AccountId,Name,StageName,Amount,CloseDate,IsClosed,IsWon,CreatedDate,Age,Fiscal Period\r\n"
    b'0065g00000RoAaAAAK,0015g00000RpAaAAAK,Northwind - Q1 order,Closed Won,"12,500.00",02/03/24,TRUE,TRUE,'
    b"01/05/24 08:00 AM,29,Q1-2024\r\n"
    b'0065g00000RoAbAAAK,0015g00000RpAaAAAK,Northwind - Reorder,Closed Lost,"4,000.00",03/28/24,TRUE,FALSE,'
    b"02/10/24 10:15 AM,47,Q1-2024\r\n"
    b'0065g00000RoAcAAAK,0015g00000RpAbAAAK,Contoso - Rollout,Negotiation/Review,"90,000.00",12/15/26,FALSE,FALSE,'
    b"02/23/26 08:55 PM,286,Q4-2026\r\n"
)
# Case.csv from a report: checkboxes 1 / 0, M/D/YYYY h:mm AM/PM, a computed Age (Hours)
REPORT_CASES = (
    b"Id,CaseNumber,AccountId,Origin,Type,Priority,Status,IsClosed,CreatedDate,ClosedDate,Age (Hours)\r\n"
    b"5005g00000RkAaAAAK,00002001,0015g00000RpAbAAAK,Phone,Problem,High,Closed,1,11/30/2023 4:10 PM,"
    b"12/13/2023 9:00 AM,304.8\r\n"
    b"5005g00000RkAbAAAK,00002002,0015g00000RpAaAAAK,Email,Question,Low,Closed,1,3/2/2024 11:00 AM,"
    b"3/2/2024 1:30 PM,2.5\r\n"
    b"5005g00000RkAcAAAK,00002003,0015g00000RpAbAAAK,Web,Problem,Medium,New,0,4/20/2024 2:00 PM,,\r\n"
)
REPORT_FILES = {
    "Account.csv": REPORT_ACCOUNTS,
    "Contact.csv": REPORT_CONTACTS,
    "Opportunity.csv": REPORT_OPPORTUNITIES,
    "Case.csv": REPORT_CASES,
}


@pytest.mark.parametrize("kind", KINDS)
def test_reports_and_files_resaved_in_a_spreadsheet(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    today = dt.datetime.now(dt.UTC).date()
    report = import_paths(engine, [write_exports(tmp_path / "report", REPORT_FILES)], mapping="salesforce")
    assert report.ok, report.render()
    assert report.rows == {"accounts": 3, "pipeline_stages": 10, "contacts": 2, "deals": 3, "tickets": 3}
    assert _rows(engine, "SELECT deal_id, status, amount, created_at, closed_at FROM deals ORDER BY 1") == [
        ("0065g00000RoAaAAAK", "won", 12500.0, dt.datetime(2024, 1, 5, 8), dt.datetime(2024, 2, 3)),
        ("0065g00000RoAbAAAK", "lost", 4000.0, dt.datetime(2024, 2, 10, 10, 15), dt.datetime(2024, 3, 28)),
        ("0065g00000RoAcAAAK", "open", 90000.0, dt.datetime(2026, 2, 23, 20, 55), None),
    ]
    # accounts without CreatedDate: the earliest date of their own records, else the import day
    # Northwind: contact 2023-12-18 09:30 < deals 2024-01-05, 2024-02-10 < case 2024-03-02
    # Contoso: case 2023-11-30 16:10 < contact 2024-03-04 < deal 2026-02-23
    assert _rows(engine, "SELECT name, created_at FROM accounts ORDER BY account_id") == [
        ("Northwind Traders", dt.datetime(2023, 12, 18, 9, 30)),
        ("Contoso, Ltd.", dt.datetime(2023, 11, 30, 16, 10)),
        ("Tailspin Toys", dt.datetime.combine(today, dt.time())),
    ]
    estimated = [w for w in _warnings(report) if "ESTIMATED" in w]
    assert estimated == [
        "Account.csv: ESTIMATED accounts.created_at of 2 account(s) without a creation date: the earliest date "
        "of the account's own records in this import (deals, contacts, tickets, …) (e.g. line 2: Northwind "
        "Traders → 2023-12-18; line 3: Contoso, Ltd. → 2023-11-30)",
        "Account.csv: ESTIMATED accounts.created_at of 1 account(s) without a creation date and without any "
        f"record of their own in this import: the import day, {today:%Y-%m-%d} (first seen) (e.g. line 4: "
        f"Tailspin Toys → {today:%Y-%m-%d})",
    ]
    # the day/month order of each column is reported with the value that decided it
    assert (
        "Opportunity.csv: dates read as %m/%d/%y (month first: '03/28/24' on line 3 has its second number "
        "above 12) (e.g. line 3: 03/28/24 → 2024-03-28; line 2: 02/03/24 → 2024-02-03; line 4: 12/15/26 → "
        "2026-12-15)"
    ) in [f"{Path(w.file).name}: {w.reason}" for w in report.warnings if w.column == "CloseDate"]
    # checkboxes 1 / 0 of the report: the two closed cases are resolved (2023: 1, 2024: 1)
    assert _rows(engine, "SELECT ticket_id, opened_at, resolved_at FROM tickets ORDER BY 1") == [
        ("5005g00000RkAaAAAK", dt.datetime(2023, 11, 30, 16, 10), dt.datetime(2023, 12, 13, 9)),
        ("5005g00000RkAbAAAK", dt.datetime(2024, 3, 2, 11), dt.datetime(2024, 3, 2, 13, 30)),
        ("5005g00000RkAcAAAK", dt.datetime(2024, 4, 20, 14), None),
    ]
    fcr = kpis.first_contact_resolution(engine, YEARS_2023_2024, "year")
    assert (fcr["resolved"].tolist(), fcr["recorded"].tolist()) == ([1, 1], [0, 0])
    assert fcr["fcr_rate"].isna().all()  # no contact counts: unknown, not 0 %
    # TRUE / FALSE of the spreadsheet: won 1, lost 1 in 2024
    wins = kpis.win_rate(engine, YEAR_2024, "year")
    assert (wins.loc[0, "won"], wins.loc[0, "lost"], wins.loc[0, "win_rate"]) == (1, 1, 0.5)
    # the won deal: created 2024-01-05 08:00, closed 2024-02-03 00:00 = 28 days 16 hours
    assert kpis.sales_cycle(engine, YEAR_2024).loc[0, "mean_days"] == pytest.approx(28 + 16 / 24)
    # importing the same files again changes nothing: stored creation dates are kept
    again = import_paths(engine, [write_exports(tmp_path / "report", REPORT_FILES)], mapping="salesforce")
    assert again.ok and sum(again.written.values()) == 0, again.render()
    assert [w for w in _warnings(again) if "creation date" in w] == [
        "Account.csv: 3 account(s) without a creation date in the file keep the one already in the database "
        "(e.g. line 2: Northwind Traders → 2023-12-18; line 3: Contoso, Ltd. → 2023-11-30; line 4: Tailspin "
        f"Toys → {today:%Y-%m-%d})"
    ]


def test_an_account_export_with_its_creation_date_is_not_estimated(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    report = import_paths(
        engine, [write_exports(tmp_path / "x", {"Account.csv": ORG_ACCOUNTS})], mapping="salesforce"
    )
    assert report.ok, report.render()
    assert not [w for w in _warnings(report) if "ESTIMATED" in w]


# ---- D. Windows-1252 with stray UTF-8 and a byte it does not define -------------------------

# A Data Loader extract saved as Windows-1252 ("ANSI") by a spreadsheet: é = 0xe9, ë = 0xeb,
# Å = 0xc5; Brasserie Zoë's description holds a quoted line break (lines 3-4); line 5 was
# pasted from a UTF-8 tool (è = 0xc3 0xa8, û = 0xc3 0xbb); line 6 holds 0x81 (the DOS code
# page's ü), which Windows-1252 does not define.
LATIN_ACCOUNTS = (
    b'"ID","NAME","BILLINGCITY","BILLINGCOUNTRY","DESCRIPTION","OWNERID","CREATEDDATE"\r\n'
    b'"0015g00000EnAaAAAK","Soci\xe9t\xe9 G\xe9n\xe9rale","Paris","France","Banque","0055g00000UsRaAAAS",'
    b'"2024-01-05T09:12:44.000Z"\r\n'
    b'"0015g00000EnAbAAAK","Brasserie Zo\xeb","Lyon","France","Ouverte en 1998,\r\n'
    b'r\xe9nov\xe9e en 2020","0055g00000UsRaAAAS","2024-01-08T10:00:00.000Z"\r\n'
    b'"0015g00000EnAcAAAK","Cr\xc3\xa8me Br\xc3\xbbl\xc3\xa9e SARL","Dijon","France","","0055g00000UsRaAAAS",'
    b'"2024-01-09T11:00:00.000Z"\r\n'
    b'"0015g00000EnAdAAAK","M\x81nchner R\xfcck AG","M\xfcnchen","Germany","","0055g00000UsRbAAAS",'
    b'"2024-01-10T12:00:00.000Z"\r\n'
    b'"0015g00000EnAeAAAK","\xc5lesund Fisk AS","\xc5lesund","Norway","","0055g00000UsRbAAAS",'
    b'"2024-01-11T13:00:00.000Z"\r\n'
)


@pytest.mark.parametrize("kind", KINDS)
def test_windows_1252_with_stray_utf8_and_an_undefined_byte(kind: str, make_db, tmp_path: Path) -> None:
    engine = make_db(kind)
    report = import_paths(
        engine, [write_exports(tmp_path / "dl", {"extract.csv": LATIN_ACCOUNTS})], mapping="salesforce"
    )
    assert report.ok, report.render()
    assert _rows(engine, "SELECT name, city FROM accounts ORDER BY account_id") == [
        ("Société Générale", "Paris"),
        ("Brasserie Zoë", "Lyon"),
        ("Crème Brûlée SARL", "Dijon"),  # the UTF-8 line read as UTF-8
        ("M\x81nchner Rück AG", "München"),  # 0x81 kept as a control character: to check
        ("Ålesund Fisk AS", "Ålesund"),
    ]
    # line numbers of the file, the quoted line break counted: Windows-1252 on lines 2, 3, 4, 7;
    # ISO-8859-1 on line 6; and the file, in a folder, was recognised by its columns
    assert _warnings(report) == [
        "extract.csv: read as the account export: recognised by its columns (Id, Name), not by its name",
        'extract.csv: line(s) that are not UTF-8: read as Windows-1252 (e.g. line 2: byte 0xe9 in "Société '
        'Générale"; line 3: byte 0xeb in "Brasserie Zoë"; line 4: byte 0xe9 in "rénovée en 2020"; and 1 more)',
        "extract.csv: line(s) that are neither UTF-8 nor Windows-1252: read as ISO-8859-1 (Latin-1), where "
        "such bytes are control characters (check these values) (e.g. line 6: byte 0x81 in "
        '"M\\x81nchner Rück AG")',
    ]
