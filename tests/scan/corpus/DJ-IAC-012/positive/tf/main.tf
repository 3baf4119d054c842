resource "aws_sqs_queue" "jobs" {
  name              = "jobs"
  kms_master_key_id = var.data_key_arn
}

variable "data_key_arn" {
  type = string
}

resource "aws_sqs_queue_policy" "jobs" {
  queue_url = aws_sqs_queue.jobs.id
  policy    = jsonencode({ Version = "2012-10-17", Statement = [{ Effect = "Allow", Principal = "*", Action = "sqs:SendMessage", Resource = aws_sqs_queue.jobs.arn }] })  # expect: DJ-IAC-012@high
}
