# The watchdog's memory across invocations: one small document per watched
# service (the open problem, recent restores and escalations) in a Firestore
# database of its own, so that the grant in iam.tf can name exactly it.

resource "google_firestore_database" "state" {
  project     = var.project_id
  name        = var.name
  location_id = var.region
  type        = "FIRESTORE_NATIVE"
  # The records only suppress repeated alerts; losing them costs at most one
  # repeated alert per service. Protection would only make destroy fail.
  delete_protection_state = "DELETE_PROTECTION_DISABLED"
  deletion_policy         = "DELETE"

  depends_on = [google_project_service.enabled]
}
