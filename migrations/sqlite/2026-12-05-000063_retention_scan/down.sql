DROP INDEX consent_events_retention;
