terraform {
  # check blocks and preconditions need 1.5; 2.x may change the language.
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Checked offline against the 6.50.0 and 8.7.0 schemas
      # (tests/data/google_provider_schema.json); 7.x lies between them
      # and is assumed to be compatible, not checked.
      version = ">= 6.50.0, < 9.0.0"
    }
  }
}
