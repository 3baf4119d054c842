"""Buckets, queues, topics, log groups and Cognito pools of CloudFormation templates,
with AWS's effective values where a property is absent."""

from __future__ import annotations

from donjon.scan.iac.cfn import load_text
from donjon.scan.iac.model import App, Val

HEAD = "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n"


def _app(resources: str) -> App:
    app = load_text("template.yaml", HEAD + resources)
    assert isinstance(app, App)
    return app


BUCKETS = """\
  Open:
    Type: AWS::S3::Bucket
    Properties:
      AccessControl: PublicReadWrite
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: false
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
  OpenPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Open
      PolicyDocument:
        Statement:
          - Effect: Allow
            Principal: '*'
            Action: s3:GetObject
            Resource: !Sub 'arn:aws:s3:::${Open}/*'
  Closed:
    Type: AWS::S3::Bucket
    Properties:
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault:
              SSEAlgorithm: aws:kms
              KMSMasterKeyID: !GetAtt Key.Arn
  Bare:
    Type: AWS::S3::Bucket
  Key:
    Type: AWS::KMS::Key
"""


def test_buckets_acl_public_access_block_policy_and_encryption() -> None:
    """ACLs are normalised; one flag off is not blocked; a bucket policy attaches;
    absent settings read as AWS applies them (private, SSE-S3, nothing blocked here)."""
    buckets = {b.where.resource: b for b in _app(BUCKETS).buckets}
    open_ = buckets["Open"]
    assert open_.acl == Val.of("public-read-write", 6)
    assert open_.public_access_blocked == Val.of(False, 7)
    assert [(s.principals, s.resources, s.line) for s in open_.policy] == [
        (("*",), ("arn:aws:s3:::${Open}/*",), 18)
    ]
    closed = buckets["Closed"]
    assert closed.public_access_blocked == Val.of(True, 25)
    assert closed.encryption.one == "kms"
    assert closed.kms_key == Val.of("${Key.Arn}", 34)
    assert closed.policy == ()
    bare = buckets["Bare"]
    assert (bare.acl.one, bare.public_access_blocked.one, bare.encryption.one) == (
        "private",
        False,
        "managed",
    )


QUEUES = """\
  Plain: {Type: AWS::SQS::Queue}
  Unencrypted:
    Type: AWS::SQS::Queue
    Properties: {SqsManagedSseEnabled: false}
  Keyed:
    Type: AWS::SQS::Queue
    Properties: {KmsMasterKeyId: alias/custom}
  KeyedPolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Keyed]
      PolicyDocument:
        Statement:
          - {Effect: Allow, Principal: {Service: sns.amazonaws.com}, Action: sqs:SendMessage,
             Resource: '*', Condition: {ArnEquals: {aws:SourceArn: !Ref Topic}}}
  Topic: {Type: AWS::SNS::Topic}
  Sealed:
    Type: AWS::SNS::Topic
    Properties: {KmsMasterKeyId: alias/aws/sns}
  TopicPolicy:
    Type: AWS::SNS::TopicPolicy
    Properties:
      Topics: [!Ref Sealed]
      PolicyDocument: {Statement: [{Effect: Allow, Principal: {AWS: '*'}, Action: sns:Publish}]}
"""


def test_queues_and_topics_encryption_and_policies() -> None:
    """SQS is encrypted by SQS unless turned off; SNS is not unless given a key; the
    AWS-managed key alias counts as managed; resource policies attach by reference."""
    queues = {q.where.resource: q for q in _app(QUEUES).queues}
    assert queues["Plain"].kind == "sqs"
    assert queues["Plain"].encryption.one == "managed"
    assert queues["Unencrypted"].encryption == Val.of("none", 6)
    assert queues["Keyed"].encryption.one == "kms"
    assert queues["Keyed"].kms_key == Val.of("alias/custom", 9)
    assert queues["Keyed"].policy[0].principals == ("service:sns.amazonaws.com",)
    assert queues["Keyed"].policy[0].conditions[0].values == ("${Topic}",)
    assert queues["Topic"].kind == "sns"
    assert queues["Topic"].encryption.one == "none"
    assert queues["Sealed"].encryption.one == "managed"
    assert queues["Sealed"].policy[0].principals == ("*",)


IDENTITY = """\
  Logs:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: /app, RetentionInDays: 30}
  Forever: {Type: AWS::Logs::LogGroup}
  Weak:
    Type: AWS::Cognito::UserPool
    Properties:
      MfaConfiguration: OPTIONAL
      Policies:
        PasswordPolicy: {MinimumLength: 6, RequireNumbers: true}
  Default: {Type: AWS::Cognito::UserPool}
  Guests:
    Type: AWS::Cognito::IdentityPool
    Properties: {AllowUnauthenticatedIdentities: true}
"""


def test_log_groups_and_cognito_pools() -> None:
    """Retention and keys of log groups; password length, classes and MFA of user pools
    (Cognito's defaults when absent); unauthenticated identities of identity pools."""
    app = _app(IDENTITY)
    logs = {g.where.resource: g for g in app.log_groups}
    assert logs["Logs"].retention_days == Val.of(30, 5)
    assert not logs["Forever"].retention_days.present
    pools = {p.where.resource: p for p in app.user_pools}
    weak = pools["Weak"]
    assert (weak.kind, weak.password_min_length, weak.password_classes.one, weak.mfa.one) == (
        "user-pool",
        Val.of(6, 12),
        1,
        "OPTIONAL",
    )
    default = pools["Default"]
    assert (default.password_min_length.one, default.password_classes.one, default.mfa.one) == (
        8,
        4,
        "OFF",
    )
    guests = pools["Guests"]
    assert guests.kind == "identity-pool"
    assert guests.allow_unauthenticated == Val.of(True, 16)
