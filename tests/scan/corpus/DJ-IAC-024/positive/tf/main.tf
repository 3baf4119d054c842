resource "aws_sns_topic" "alerts" {  # expect: DJ-IAC-024@high
  name = "alerts"
}
