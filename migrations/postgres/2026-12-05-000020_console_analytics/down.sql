DROP TABLE console_sign_in_codes;
ALTER TABLE api_tokens DROP COLUMN label;
ALTER TABLE opt_out_requests DROP COLUMN completion_note;
DROP TABLE analytics_submissions;
DROP TABLE analytics_decisions;
DROP TABLE analytics_cursors;
