DROP TABLE opt_out_requests;
