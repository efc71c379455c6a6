"""MTA log parsing (Postfix, Sendmail, Exim) and log followers."""
